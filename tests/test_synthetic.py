"""Tests of the procedural head phantoms (mriganx.synthetic), all on small grids."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mriganx.synthetic import (
    TISSUE_PARAMETERS,
    Phantom,
    Tissue,
    axial_png_slices,
    make_phantom,
    mni_affine,
    reorient,
    spin_echo,
    write_subjects,
)

SMALL = {"shape": (48, 56, 40), "spacing": 4.0}


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom(seed=11, **SMALL)


def _world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _voxel(affine: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    ijk = (xyz - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    rounded = np.rint(ijk)
    assert np.allclose(ijk, rounded, atol=1e-6)
    return rounded.astype(int)


def test_same_seed_same_phantom_and_different_seeds_differ() -> None:
    a, b, c = (make_phantom(seed=s, **SMALL) for s in (4, 4, 5))
    for name in ("t1", "t2", "labels", "affine"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.labels, c.labels)
    assert not np.array_equal(a.t1, c.t1)


def test_noise_is_seeded_too() -> None:
    a, b = (make_phantom(seed=2, noise=0.03, **SMALL) for _ in range(2))
    assert np.array_equal(a.t2, b.t2)


def test_shapes_dtypes_and_scale(phantom: Phantom) -> None:
    assert phantom.t1.shape == phantom.t2.shape == phantom.labels.shape == SMALL["shape"]
    assert phantom.t1.dtype == phantom.t2.dtype == np.float32
    assert phantom.labels.dtype == np.uint8
    assert phantom.affine.shape == (4, 4) and phantom.affine.dtype == np.float64
    assert set(np.unique(phantom.labels)) <= {int(t) for t in Tissue}
    for image in (phantom.t1, phantom.t2):
        assert np.isfinite(image).all() and image.min() >= 0
        # The brightest tissue's signal is 1000, give or take the few-percent texture.
        assert 950 <= image.max() <= 1050
    assert np.allclose(phantom.affine, mni_affine(SMALL["shape"], SMALL["spacing"]))


def test_background_is_exactly_zero_without_noise(phantom: Phantom) -> None:
    for image in (phantom.t1, phantom.t2, phantom.labels):
        for axis in range(3):  # every face of the grid is air
            assert not np.take(image, [0, -1], axis=axis).any()
    air = phantom.labels == Tissue.BACKGROUND
    # Only the thin partial-volume rim outside the scalp may carry some signal.
    assert (phantom.t1[air] == 0).mean() > 0.95 and (phantom.t2[air] == 0).mean() > 0.95


def test_noise_is_rician_and_bias_keeps_the_anatomy() -> None:
    clean = make_phantom(seed=3, **SMALL)
    noisy = make_phantom(seed=3, noise=0.05, **SMALL)
    air = clean.labels == Tissue.BACKGROUND
    assert noisy.t1.min() >= 0 and (noisy.t1[air] > 0).mean() > 0.99
    # Rician noise in air: mean = sigma * sqrt(pi / 2) with sigma = 5% of the clean maximum.
    sigma = 0.05 * clean.t1.max()
    assert noisy.t1[air].mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.1)
    biased = make_phantom(seed=3, bias=0.3, **SMALL)
    assert np.array_equal(biased.labels, clean.labels)
    head = clean.t1 > 0
    ratio = biased.t1[head] / clean.t1[head]
    assert ratio.min() >= 0.7 - 1e-4 and ratio.max() <= 1.3 + 1e-4 and ratio.max() - ratio.min() > 0.2


def test_mni_affine() -> None:
    expected = np.array([[1, 0, 0, -90], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]], float)
    assert np.array_equal(mni_affine(), expected)
    # Any grid keeps its centre voxel at the MNI grid's centre, world (0, -18, 18).
    for shape, spacing in (((48, 56, 40), 4.0), ((91, 109, 91), (2.0, 2.0, 2.0))):
        centre = (np.asarray(shape) - 1) / 2.0
        assert np.allclose(_world(mni_affine(shape, spacing), centre), [0, -18, 18])


def test_contrast_order(phantom: Phantom) -> None:
    def mean(image: np.ndarray, tissue: Tissue) -> float:
        return float(image[phantom.labels == tissue].mean())

    wm, gm, csf = Tissue.WM, Tissue.GM, Tissue.CSF
    assert mean(phantom.t1, wm) > mean(phantom.t1, gm) > mean(phantom.t1, csf)
    assert mean(phantom.t2, csf) > mean(phantom.t2, gm) > mean(phantom.t2, wm)
    assert mean(phantom.t2, Tissue.VENTRICLE) > mean(phantom.t2, gm)
    # Scalp fat is bright on T1w; bone (no signal, only partial volume at 4 mm) is the darkest tissue on both.
    assert mean(phantom.t1, Tissue.FAT) > mean(phantom.t1, wm)
    for image in (phantom.t1, phantom.t2):
        others = [mean(image, t) for t in Tissue if t not in (Tissue.BACKGROUND, Tissue.SKULL)]
        assert mean(image, Tissue.SKULL) < 0.8 * min(others)


def test_signal_equation_values() -> None:
    # BrainWeb's WM (T1 500 ms, T2 70 ms, PD 0.77) with TR 500 ms, TE 15 ms.
    expected = 0.77 * (1 - np.exp(-1.0)) * np.exp(-15 / 70)
    assert spin_echo(TISSUE_PARAMETERS[Tissue.WM], 500.0, 15.0) == pytest.approx(expected)
    assert spin_echo(TISSUE_PARAMETERS[Tissue.SKULL], 500.0, 15.0) == 0.0


def test_all_tissues_present_and_nested(phantom: Phantom) -> None:
    counts = np.bincount(phantom.labels.ravel(), minlength=len(Tissue))
    for tissue in Tissue:
        assert counts[tissue] > 0, tissue.name
    # Going outward from the centre along the left-right axis: brain, then CSF, skull, fat, scalp, air.
    centre = np.array(phantom.labels.shape) // 2
    ray = [int(v) for v in phantom.labels[centre[0]:, centre[1], centre[2]]]
    order = [t for i, t in enumerate(ray) if i == 0 or t != ray[i - 1]]
    outer = [t for t in order if t in (Tissue.CSF, Tissue.SKULL, Tissue.FAT, Tissue.SCALP, Tissue.BACKGROUND)]
    assert outer[-4:] == [Tissue.SKULL, Tissue.FAT, Tissue.SCALP, Tissue.BACKGROUND] or outer[-3:] == [
        Tissue.SKULL,
        Tissue.SCALP,
        Tissue.BACKGROUND,
    ]


def _boundary_ratio(mask: np.ndarray) -> float:
    """Voxel faces between the mask and the rest, over volume**(2/3): about 7 for any ellipsoid, scale-free."""
    faces = sum(np.count_nonzero(np.diff(mask.astype(np.int8), axis=axis)) for axis in range(3))
    return faces / mask.sum() ** (2 / 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_cortex_is_folded(seed: int) -> None:
    ph = make_phantom(seed=seed, shape=(90, 108, 90), spacing=2.0)
    white = np.isin(ph.labels, [Tissue.WM, Tissue.VENTRICLE])
    i, j, k = np.ogrid[:90, :108, :90]
    ellipsoid = ((i - 45) / 28) ** 2 + ((j - 54) / 36) ** 2 + ((k - 45) / 24) ** 2 < 1
    # Gyral white-matter fingers and sulci give white matter several times an ellipsoid's surface for its volume.
    assert _boundary_ratio(white) > 3 * _boundary_ratio(ellipsoid)
    # Sulcal CSF reaches well below the brain surface: CSF voxels with white matter within 2 voxels.
    csf = ph.labels == Tissue.CSF
    near_white = np.zeros_like(white)
    for axis in range(3):
        for shift in (-2, -1, 1, 2):
            near_white |= np.roll(white, shift, axis=axis)
    assert (csf & near_white).sum() > 0.05 * csf.sum()


def test_same_anatomy_on_any_grid() -> None:
    coarse = make_phantom(seed=8, **SMALL)
    fine = make_phantom(seed=8, shape=(95, 111, 79), spacing=2.0)
    # Every coarse voxel centre is also a fine voxel centre (both grids share their centre).
    ijk = np.argwhere(np.ones(SMALL["shape"], bool))
    fine_ijk = _voxel(fine.affine, _world(coarse.affine, ijk))
    agree = coarse.labels.ravel() == fine.labels[tuple(fine_ijk.T)]
    assert agree.mean() > 0.9


@pytest.mark.parametrize("axcodes", ["LPS", "PIR", "ASL"])
def test_axcodes_reorders_and_keeps_world_positions(axcodes: str) -> None:
    ras = make_phantom(seed=6, **SMALL)
    other = make_phantom(seed=6, axcodes=axcodes, **SMALL)
    assert "".join(nib.aff2axcodes(other.affine)) == axcodes
    for name in ("t1", "t2", "labels"):
        expected, affine = reorient(getattr(ras, name), ras.affine, axcodes)
        assert np.array_equal(getattr(other, name), expected)
        assert np.allclose(other.affine, affine)
    # A voxel of the reoriented phantom shows what the RAS phantom has at the same world position.
    rng = np.random.default_rng(0)
    ijk = rng.integers(0, other.labels.shape, size=(500, 3))
    ras_ijk = _voxel(ras.affine, _world(other.affine, ijk))
    assert np.array_equal(other.labels[tuple(ijk.T)], ras.labels[tuple(ras_ijk.T)])
    assert np.array_equal(other.t1[tuple(ijk.T)], ras.t1[tuple(ras_ijk.T)])


@settings(max_examples=12, deadline=None)
@given(st.permutations("RAS"), st.lists(st.booleans(), min_size=3, max_size=3))
def test_reorient_round_trips(order: list[str], flips: list[bool]) -> None:
    opposite = {"R": "L", "A": "P", "S": "I"}
    codes = "".join(opposite[c] if f else c for c, f in zip(order, flips))
    array = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    affine = mni_affine((4, 5, 6), (1.0, 2.0, 3.0))
    moved, moved_affine = reorient(array, affine, codes)
    assert "".join(nib.aff2axcodes(moved_affine)) == codes
    back, back_affine = reorient(moved, moved_affine, "RAS")
    assert np.array_equal(back, array) and np.allclose(back_affine, affine)


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "PIR"])
def test_png_orientation_is_radiological_with_anterior_up(axcodes: str) -> None:
    shape = (48, 56, 40)
    ras_affine = mni_affine(shape, 4.0)
    centre = np.array([24, 28, 20])
    for offset, where in (([10, 0, 0], "right"), ([0, 10, 0], "anterior")):
        # A marker on the patient's right (+x in RAS+) or anterior (+y), stored in any voxel order.
        marker = np.zeros(shape, np.float32)
        marker[tuple(centre + offset)] = 1.0
        assert (_world(ras_affine, centre + offset) - _world(ras_affine, centre))[0 if where == "right" else 1] > 0
        volume, affine = reorient(marker, ras_affine, axcodes)
        slices = axial_png_slices(volume, affine)
        assert slices.shape == (shape[2], shape[1], shape[0])  # (inferior->superior, rows, columns)
        k, row, column = np.argwhere(slices)[0]
        if where == "right":  # patient's right on the image's left
            assert column < shape[0] / 2 - 5 and abs(row - (shape[1] - 1) / 2) < 1
        else:  # anterior at the top
            assert row < shape[1] / 2 - 5 and abs(column - (shape[0] - 1) / 2) < 1


def test_write_subjects_nifti(tmp_path: Path) -> None:
    paths = write_subjects(tmp_path, n_subjects=2, seed=20, axcodes="LPS", **SMALL)
    assert len(paths) == 2
    assert paths[0]["t1"] == tmp_path / "sub-01_T1w.nii.gz"
    assert paths[1]["labels"] == tmp_path / "sub-02_labels.nii.gz"
    for i, files in enumerate(paths):
        ph = make_phantom(seed=20 + i, axcodes="LPS", **SMALL)
        for key, array in (("t1", ph.t1), ("t2", ph.t2), ("labels", ph.labels)):
            image = nib.load(files[key])
            assert image.get_data_dtype() == array.dtype
            assert np.array_equal(np.asanyarray(image.dataobj), array)
            assert np.allclose(image.affine, ph.affine)
            qform, qcode = image.header.get_qform(coded=True)
            sform, scode = image.header.get_sform(coded=True)
            assert int(qcode) == 1 and int(scode) == 1
            assert np.allclose(qform, ph.affine, atol=1e-5) and np.allclose(sform, ph.affine)


def test_write_subjects_png(tmp_path: Path) -> None:
    ras = write_subjects(tmp_path / "ras", n_subjects=1, seed=9, png=True, **SMALL)[0]
    lps = write_subjects(tmp_path / "lps", n_subjects=1, seed=9, png=True, axcodes="LPS", **SMALL)[0]
    ph = make_phantom(seed=9, **SMALL)
    for key, volume in (("png_t1", ph.t1), ("png_t2", ph.t2)):
        files = sorted(ras[key].glob("sub-01_slice-*.png"))
        assert files and ras[key] == tmp_path / "ras" / "png" / key[-2:].upper()
        # Slices with at least 30% of the largest head area, and no others.
        area = (ph.labels > 0).sum(axis=(0, 1))
        kept = [int(f.stem.split("-")[-1]) for f in files]
        assert kept == [k for k in range(len(area)) if area[k] >= 0.3 * area.max()]
        top = np.percentile(volume[ph.labels > 0], 99.9)
        for f in files:
            pixels = np.asarray(Image.open(f))
            assert pixels.dtype == np.uint8 and pixels.shape == (56, 48)
            # RAS (x: to the right, y: to anterior) -> rows anterior first, columns patient's right first.
            k = int(f.stem.split("-")[-1])
            expected = np.clip(np.rint(volume[::-1, ::-1, k].T * (255 / top)), 0, 255)
            assert np.abs(pixels.astype(int) - expected).max() <= 1
            # The same subject stored LPS gives the very same PNG.
            assert np.array_equal(pixels, np.asarray(Image.open(lps[key] / f.name)))
