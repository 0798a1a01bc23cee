"""The demo, end to end with a tiny budget: phantoms, training, conversion, evaluation and pictures."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from mriganx.cli import app
from mriganx.demo import run_demo


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", steps=20, subjects=2, spacing=5.0, progress=False)
    for path in (result.model, result.translation, result.confidence, result.evolution, result.evaluation["figure"],
                 result.evaluation["json"]):
        assert Path(path).is_file(), path
    source, translation = nib.load(result.source), nib.load(result.translation)
    assert translation.shape == source.shape
    np.testing.assert_allclose(translation.affine, source.affine)
    assert result.steps == 20 and np.isfinite(result.metrics["mean"]["mae"])
    assert np.isfinite(result.metrics["mean"]["through_plane_error"]) and -1 <= result.metrics["confidence"]["spearman"] <= 1
    assert nib.load(result.confidence).shape == source.shape
    assert "itksnap" in result.viewer_command()
    train_t1 = sorted(p.name for p in (tmp_path / "demo" / "train" / "T1w").iterdir())
    train_t2 = sorted(p.name for p in (tmp_path / "demo" / "train" / "T2w").iterdir())
    assert {n.split("_")[0] for n in train_t1}.isdisjoint({n.split("_")[0] for n in train_t2}), "training is unpaired"


def test_demo_refuses_a_used_folder(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "used"), "--steps", "5"])
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert (tmp_path / "used" / "keep.txt").read_text() == "mine"
