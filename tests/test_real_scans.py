"""The shipped model on the real development scans (../shared/data/real-dev): on both development pairs, in both
directions, it beats what a user gets without any model (the floors of ../shared/data/README.md), and the contrast
is inverted.

These scans are never trained on; the numbers are the shared scorer's (SSIM inside the brain mask).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mriganx.cli import app

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL_DEV = SHARED / "data" / "real-dev"
SCORER = SHARED / "tools" / "score_volumes.py"
pytestmark = pytest.mark.skipif(not REAL_DEV.is_dir() or not SCORER.is_file(),
                                reason="needs ../shared/data/real-dev and ../shared/tools (beside the checkout)")
# The best answer-blind baseline ("1 - input") of each development pair, from ../shared/data/README.md.
FLOORS = {("tcga-DU-7294_desc-brain", "t1-to-t2"): 0.498, ("tcga-DU-7294_desc-brain", "t2-to-t1"): 0.555,
          ("brats-GLI-00001_desc-brain", "t1-to-t2"): 0.431, ("brats-GLI-00001_desc-brain", "t2-to-t1"): 0.527}
SOURCE = {"t1-to-t2": "T1w", "t2-to-t1": "T2w"}
TARGET = {"t1-to-t2": "T2w", "t2-to-t1": "T1w"}


def _convert(stem: str, direction: str, out: Path) -> Path:
    source = REAL_DEV / f"{stem}_{SOURCE[direction]}.nii.gz"
    result = CliRunner().invoke(app, ["convert", str(source), "--direction", direction, "-o", str(out)])
    assert result.exit_code == 0, result.output
    (written,) = out.glob("*.nii.gz")
    return written


@pytest.mark.parametrize(("stem", "direction"), list(FLOORS))
def test_the_shipped_model_beats_the_answer_blind_floor(stem: str, direction: str, tmp_path: Path) -> None:
    pytest.importorskip("scipy")  # the shared scorer's
    written = _convert(stem, direction, tmp_path)
    target, mask = REAL_DEV / f"{stem}_{TARGET[direction]}.nii.gz", REAL_DEV / f"{stem}_mask.nii.gz"
    scored = subprocess.run([sys.executable, str(SCORER), str(written), str(target), str(mask)],
                            capture_output=True, text=True, check=True)
    assert json.loads(scored.stdout)["ssim_mask"] > FLOORS[stem, direction]


@pytest.mark.parametrize("direction", list(SOURCE))
def test_the_contrast_is_inverted_inside_the_brain_of_gli_00001(direction: str, tmp_path: Path) -> None:
    stem = "brats-GLI-00001_desc-brain"
    written = _convert(stem, direction, tmp_path)
    mask = nib.load(REAL_DEV / f"{stem}_mask.nii.gz").get_fdata() > 0
    source = nib.load(REAL_DEV / f"{stem}_{SOURCE[direction]}.nii.gz").get_fdata()[mask]
    translated = nib.load(written).get_fdata()[mask]
    ranks = [np.argsort(np.argsort(values)) for values in (source, translated)]
    # Real T1w/T2w pairs give -0.49 to -0.91 (issue 22); a model that keeps the input's contrast gives above 0.
    assert np.corrcoef(*ranks)[0, 1] < -0.4


def test_air_with_a_floor_stays_dark(tmp_path: Path) -> None:
    """A scan whose air is not black (a template, an offset, a filtered background) keeps dark air: before the head
    mask's threshold followed the scan's own air level, a 3 % floor in the air of this T1w became bright "CSF" in
    every air voxel of the synthetic T2w."""
    image = nib.load(REAL_DEV / "tcga-DU-7294_desc-brain_T1w.nii.gz")
    values = image.get_fdata(dtype=np.float32)
    air = values <= values.min()
    top = np.percentile(values[~air], 99.5)
    noise = np.random.default_rng(0).normal(0.0, 0.005 * top, values.shape)
    floored = np.where(air, 0.03 * top + noise, values).astype(np.float32)
    floored[0, 0, 0] = 0.0  # the scan's minimum stays 0, as in a template
    source = tmp_path / "floored_T1w.nii.gz"
    nib.save(nib.Nifti1Image(floored, image.affine), source)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["convert", str(source), "--direction", "t1-to-t2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    translated = nib.load(next(out.glob("*.nii.gz"))).get_fdata()
    bright = translated[air] > 0.1 * np.percentile(translated[~air], 99.5)
    assert bright.mean() < 0.01
