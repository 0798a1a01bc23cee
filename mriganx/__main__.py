"""``python -m mriganx`` (and ``torchrun -m mriganx``) runs the command line."""

from mriganx.cli import app

app()
