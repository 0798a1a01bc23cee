"""The shipped YAML configs (this folder is installed as the package mriganx.configs)."""
