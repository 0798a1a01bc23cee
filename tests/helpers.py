"""Helpers the tests share (fixtures live in conftest.py): where the shared real data sit, a NIfTI writer with
chosen qform/sform codes, and the small phantom grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SEED_SET = SHARED_DATA / "seed-t1t2"
DICOM_SERIES = SHARED_DATA / "dicom-t1-series"
REAL_T1T2 = SHARED_DATA / "real-t1t2"

# A small grid that still holds a whole head: 4 mm voxels.
SMALL_SHAPE = (44, 52, 40)
SMALL_SPACING = 4.0


def needs_shared(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=f"shared real data not found at {path} (it sits beside the checkout)")


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray, qform_code: int = 1, sform_code: int = 1) -> Path:
    """Write a test input with chosen qform/sform codes (0 leaves that matrix unset), as scanners' files vary."""
    image = nib.Nifti1Image(array.astype(np.float32), affine)
    image.set_qform(affine if qform_code else None, code=qform_code)
    image.set_sform(affine if sform_code else None, code=sform_code)
    nib.save(image, path)
    return path


def assert_one_line_error(result, *needles: str) -> str:
    """A CLI result with exit code 2 and exactly one error line holding every needle (informational lines, such as
    the model used, may come before it); returns that line."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
