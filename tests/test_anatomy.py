"""T2w drawn on real anatomy (mriganx.anatomy) and the ablation step that writes them into a training set."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mriganx.anatomy import TissueLevels, draw_t2w, tissue_fractions
from mriganx.contrast import detect_contrast
from mriganx.io import load_image
from mriganx.synthetic import Tissue, make_phantom
from tests.helpers import write_nifti

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from ablation import write_anatomy_t2w  # noqa: E402

REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-dev"


@pytest.fixture(scope="module")
def brain():
    """A brain-extracted phantom T1w with its tissue labels."""
    return make_phantom(seed=4, shape=(61, 73, 61), spacing=3.0, noise=0.01, skull_strip=True)


def test_fractions_partition_the_brain_by_partial_volume() -> None:
    levels = TissueLevels(csf=20.0, gm=60.0, wm=100.0)
    t1w = np.array([0.0, 20.0, 40.0, 60.0, 80.0, 100.0, 130.0, 50.0], np.float32)
    mask = np.array([True] * 7 + [False])
    f = tissue_fractions(t1w, mask, levels)
    np.testing.assert_allclose(f[:, :7].sum(axis=0), 1.0, atol=1e-6)
    assert f[:, 7].sum() == 0.0  # outside the brain
    np.testing.assert_allclose(f[:, 2], [0.5, 0.5, 0.0])  # half-way between CSF and GM
    np.testing.assert_allclose(f[:, 4], [0.0, 0.5, 0.5])
    np.testing.assert_allclose(f[:, [0, 3, 6]].T, np.eye(3))  # below CSF, at GM, above WM: pure tissues


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_drawn_t2w_orders_the_tissues_as_a_t2w(brain, seed: int) -> None:
    mask = brain.t1 > 0
    t2w = draw_t2w(brain.t1, mask, brain.affine, seed)
    assert t2w.shape == brain.t1.shape and t2w.dtype == np.float32
    assert not t2w[~mask].any()
    median = {t: np.median(t2w[brain.labels == t]) for t in (Tissue.WM, Tissue.GM, Tissue.VENTRICLE)}
    assert median[Tissue.VENTRICLE] > 1.5 * median[Tissue.WM]
    assert median[Tissue.VENTRICLE] > median[Tissue.GM] > median[Tissue.WM]
    found = detect_contrast(_image(brain, t2w))
    assert found.contrast == "t2", found.reason


def test_the_seed_fixes_the_drawing(brain) -> None:
    mask = brain.t1 > 0
    first, again = draw_t2w(brain.t1, mask, brain.affine, 5), draw_t2w(brain.t1, mask, brain.affine, 5)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, draw_t2w(brain.t1, mask, brain.affine, 6))


def test_the_training_set_step_writes_each_drawing_once(brain, tmp_path: Path) -> None:
    source = tmp_path / "real-dev"
    source.mkdir()
    write_nifti(source / "aomic-0001_desc-brain_T1w.nii.gz", brain.t1, brain.affine)
    out = tmp_path / "T2w"
    out.mkdir()
    [written] = write_anatomy_t2w(out, source, {"aomic-0001_desc-brain_T1w": 3})
    assert written.name == "aomic-0001_acq-anatomy3_desc-brain_T2w.nii.gz"
    image = load_image(written)
    np.testing.assert_allclose(image.affine, brain.affine)
    np.testing.assert_allclose(image.array, draw_t2w(brain.t1, brain.t1 > 0, brain.affine, 3), rtol=1e-6)
    stamp = written.stat().st_mtime_ns
    write_anatomy_t2w(out, source, {"aomic-0001_desc-brain_T1w": 3})
    assert written.stat().st_mtime_ns == stamp


@pytest.mark.skipif(not (REAL_DEV / "aomic-0001_desc-brain_T1w.nii.gz").is_file(),
                    reason="needs ../shared/data/real-dev beside the checkout")
def test_a_t2w_drawn_on_a_real_brain_reads_as_t2w(tmp_path: Path) -> None:
    [written] = write_anatomy_t2w(tmp_path, REAL_DEV, {"aomic-0001_desc-brain_T1w": 1})
    found = detect_contrast(load_image(written))
    assert found.contrast == "t2", found.reason


def _image(phantom, array: np.ndarray):
    from mriganx.io import Image, ImageKind

    return Image(array=array, affine=phantom.affine, kind=ImageKind.NIFTI, source=Path("drawn.nii.gz"))
