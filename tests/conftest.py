"""Shared fixtures: small synthetic phantoms written to disk and a trained smoke model (helpers: tests/helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.helpers import SMALL_SHAPE, SMALL_SPACING

torch.set_num_threads(int(os.environ.get("MRIGANX_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def phantom_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two training subjects split into T1w and T2w folders, and one held-out subject, on a small grid."""
    from mriganx.synthetic import write_subjects

    root = tmp_path_factory.mktemp("phantoms")
    subjects = write_subjects(root / "all", n_subjects=3, seed=10, shape=SMALL_SHAPE, spacing=SMALL_SPACING)
    t1_dir, t2_dir = root / "t1", root / "t2"
    t1_dir.mkdir()
    t2_dir.mkdir()
    for subject in subjects[:2]:
        subject["t1"].rename(t1_dir / subject["t1"].name)
        subject["t2"].rename(t2_dir / subject["t2"].name)
    return {"t1": t1_dir, "t2": t2_dir, "held_t1": subjects[2]["t1"], "held_t2": subjects[2]["t2"], "root": root}


@pytest.fixture(scope="session")
def smoke_model(phantom_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model.pt from a few smoke-config steps: real weights and metadata, no skill."""
    from mriganx.config import load_config, override
    from mriganx.training import train

    run = tmp_path_factory.mktemp("smoke-run")
    config = override(load_config("smoke"), {"train.max_steps": 3, "train.device": "cpu"})
    return train(config, phantom_dirs["t1"], phantom_dirs["t2"], run, progress=False).model_path
