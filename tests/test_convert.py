"""Conversion keeps geometry: the output sits on the input's own grid, for NIfTI in any orientation and DICOM."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from mriganx.config import Direction
from mriganx.convert import convert
from mriganx.errors import MriganxError
from mriganx.io import is_translation, load_image, written_by_mriganx
from mriganx.synthetic import make_phantom
from tests.helpers import DICOM_SERIES, SMALL_SHAPE, SMALL_SPACING, needs_shared, write_nifti


def oblique(affine: np.ndarray, degrees: float = 15.0) -> np.ndarray:
    a = np.deg2rad(degrees)
    rotation = np.eye(4)
    rotation[1:3, 1:3] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return rotation @ affine


STORAGE = {
    "RAS": ("RAS", False),
    "LPS": ("LPS", False),
    "LAS": ("LAS", False),
    "oblique": ("LPS", True),
}


def phantom_file(folder: Path, storage: str, codes: tuple[int, int]) -> Path:
    axcodes, tilt = STORAGE[storage]
    phantom = make_phantom(seed=5, shape=SMALL_SHAPE, spacing=SMALL_SPACING, axcodes=axcodes)
    affine = oblique(phantom.affine) if tilt else phantom.affine
    return write_nifti(folder / f"{storage}_{codes[0]}{codes[1]}.nii.gz", phantom.t1, affine, *codes)


@pytest.mark.parametrize("codes", [(1, 1), (0, 4), (1, 2)], ids=["q1s1", "q0s4", "q1s2"])
@pytest.mark.parametrize("storage", list(STORAGE))
def test_output_is_on_the_input_grid(smoke_model: Path, tmp_path: Path, storage: str, codes: tuple[int, int]) -> None:
    source = phantom_file(tmp_path, storage, codes)
    report = convert([source], smoke_model, direction=Direction.T1_TO_T2, progress=False, device="cpu")
    assert not report.failed
    out = report.written[0]
    assert out.name == source.name.replace(".nii.gz", "_t2.nii.gz")
    before, after = nib.load(source), nib.load(out)
    assert after.shape == before.shape
    np.testing.assert_allclose(after.affine, before.affine, atol=1e-6)
    np.testing.assert_allclose(after.get_qform(), before.get_qform(), atol=1e-6)
    np.testing.assert_allclose(after.get_sform(), before.get_sform(), atol=1e-6)
    assert (int(after.header["qform_code"]), int(after.header["sform_code"])) == codes
    np.testing.assert_array_equal(after.header.get_zooms(), before.header.get_zooms())
    assert after.header.get_xyzt_units() == before.header.get_xyzt_units()
    # ITK (3D Slicer, ITK-SNAP) reads the same physical grid.
    a, b = sitk.ReadImage(str(source)), sitk.ReadImage(str(out))
    np.testing.assert_allclose(b.GetOrigin(), a.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(b.GetSpacing(), a.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(b.GetDirection(), a.GetDirection(), atol=1e-5)
    data = after.get_fdata()
    assert np.isfinite(data).all() and data.dtype == np.float64
    # Air stays air: the phantom's grid faces are air, and so are the output's (the T2w range starts at 0).
    for axis in range(3):
        for end in (0, -1):
            assert np.all(np.take(data, end, axis=axis) == 0)
    assert data.max() > 0


def test_orientation_does_not_change_the_translation(smoke_model: Path, tmp_path: Path) -> None:
    outputs = {}
    for storage in ("RAS", "LPS", "oblique"):
        source = phantom_file(tmp_path, storage, (1, 1))
        out = convert([source], smoke_model, progress=False, device="cpu").written[0]
        image = nib.load(out)
        outputs[storage] = np.asarray(nib.as_closest_canonical(image).dataobj)
    np.testing.assert_allclose(outputs["LPS"], outputs["RAS"], atol=1e-4)
    np.testing.assert_allclose(outputs["oblique"], outputs["RAS"], atol=1e-4)


def test_outputs_are_never_overwritten_silently(smoke_model: Path, tmp_path: Path) -> None:
    source = phantom_file(tmp_path, "RAS", (1, 1))
    original = source.read_bytes()
    out = convert([source], smoke_model, progress=False, device="cpu").written[0]
    stamp = out.stat().st_mtime_ns
    report = convert([source], smoke_model, progress=False, device="cpu")
    assert report.failed and "--overwrite" in str(report.failed[0])
    assert out.stat().st_mtime_ns == stamp
    with pytest.raises(MriganxError, match="is the input"):  # refused before any work
        convert([source], smoke_model, output=source, progress=False, device="cpu", overwrite=True)
    assert source.read_bytes() == original
    assert convert([source], smoke_model, progress=False, device="cpu", skip_existing=True).skipped == [out]
    assert not list(tmp_path.glob(".*part*"))


def test_many_inputs_one_bad(smoke_model: Path, tmp_path: Path) -> None:
    good = phantom_file(tmp_path, "RAS", (1, 1))
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti at all" * 10)
    outdir = tmp_path / "out"
    report = convert([good, bad], smoke_model, output=outdir, progress=False, device="cpu")
    assert [p.name for p in report.written] == ["RAS_11_t2.nii.gz"]
    assert len(report.failed) == 1 and "broken.nii.gz" in str(report.failed[0])
    assert sorted(p.name for p in outdir.iterdir()) == ["RAS_11_t2.nii.gz"]


def test_png_input_gives_png_and_nifti(smoke_model: Path, tmp_path: Path) -> None:
    from mriganx.synthetic import write_subjects

    subject = write_subjects(tmp_path / "s", 1, seed=2, shape=SMALL_SHAPE, spacing=SMALL_SPACING, png=True)[0]
    png = sorted(Path(subject["png_t2"]).glob("*.png"))[0]
    report = convert([png], smoke_model, direction=Direction.T2_TO_T1, output=tmp_path / "o", progress=False, device="cpu")
    names = sorted(p.name for p in report.written)
    assert names == [png.name.replace(".png", "_t1.nii.gz"), png.name.replace(".png", "_t1.png")]
    assert load_image(report.written[1]).array.shape == load_image(png).array.shape


def _corners(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    idx = np.array([[i, j, k, 1] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)], float)
    return (affine @ idx.T).T[:, :3]


@needs_shared(DICOM_SERIES)
def test_dicom_series_matches_dcm2niix(smoke_model: Path, tmp_path: Path) -> None:
    binary = shutil.which("dcm2niix")
    if binary is None:
        pytest.skip("dcm2niix is not installed (pip install dcm2niix)")
    series = tmp_path / "series"
    shutil.copytree(DICOM_SERIES, series)
    reference_dir = tmp_path / "dcm2niix"
    reference_dir.mkdir()
    subprocess.run([binary, "-z", "y", "-f", "ref", "-o", str(reference_dir), str(series)], check=True, capture_output=True)
    reference = nib.load(next(reference_dir.glob("ref*.nii.gz")))
    out = convert([series], smoke_model, output=tmp_path / "out", progress=False, device="cpu").written[0]
    ours = nib.load(out)
    assert sorted(ours.shape) == sorted(reference.shape)
    np.testing.assert_allclose(sorted(ours.header.get_zooms()), sorted(reference.header.get_zooms()), atol=1e-4)
    ours_corners = _corners(ours.affine, ours.shape)
    ref_corners = _corners(reference.affine, reference.shape)
    for corner in ours_corners:
        assert np.min(np.linalg.norm(ref_corners - corner, axis=1)) < 1e-3, corner
    # Voxel content maps one to one: every voxel of ours lands on a distinct voxel of dcm2niix's with the same value.
    source = load_image(series)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in source.array.shape], indexing="ij"), -1).reshape(-1, 3)
    world = source.affine @ np.c_[grid, np.ones(len(grid))].T
    theirs = np.linalg.solve(reference.affine, world)[:3].T
    index = np.rint(theirs).astype(int)
    assert np.abs(theirs - index).max() < 1e-3
    assert len(np.unique(index, axis=0)) == len(index)
    ref_data = np.asarray(reference.dataobj)
    np.testing.assert_allclose(ref_data[tuple(index.T)], source.array.reshape(-1), atol=1e-3)


def test_parallel_conversion_equals_serial(smoke_model: Path, tmp_path: Path) -> None:
    sources = [phantom_file(tmp_path, storage, (1, 1)) for storage in ("RAS", "LPS", "oblique")]
    serial = convert(sources, smoke_model, output=tmp_path / "serial", progress=False, device="cpu")
    parallel = convert(sources, smoke_model, output=tmp_path / "parallel", progress=False, device="cpu", workers=2)
    assert not serial.failed and not parallel.failed
    assert [p.name for p in serial.written] == [p.name for p in parallel.written]
    for a, b in zip(serial.written, parallel.written, strict=True):
        np.testing.assert_array_equal(np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj))


def test_overwrite_replaces_only_outputs_mriganx_wrote(smoke_model: Path, tmp_path: Path) -> None:
    """Issue 24: a measured `scan_t2.nii.gz` (or a link) where a translation would go is never replaced, with or
    without --overwrite; mriganx's own earlier output is, with --overwrite."""
    source = phantom_file(tmp_path, "RAS", (1, 1))
    measured = write_nifti(tmp_path / "RAS_11_t2.nii.gz", np.ones(SMALL_SHAPE), np.eye(4))  # nibabel's, no mriganx mark
    kept = measured.read_bytes()
    for overwrite in (False, True):
        report = convert([source], smoke_model, direction=Direction.T1_TO_T2, progress=False, device="cpu",
                         overwrite=overwrite)
        assert "not an output mriganx wrote" in str(report.failed[0]) and not report.written
    assert measured.read_bytes() == kept
    measured.unlink()
    measured.symlink_to(source)
    report = convert([source], smoke_model, direction=Direction.T1_TO_T2, progress=False, device="cpu", overwrite=True)
    assert "symbolic link" in str(report.failed[0]) and measured.is_symlink()
    measured.unlink()
    first = convert([source], smoke_model, direction=Direction.T1_TO_T2, progress=False, device="cpu").written[0]
    assert written_by_mriganx(first) and is_translation(first) and not is_translation(source)
    stamp = first.stat().st_mtime_ns
    again = convert([source], smoke_model, direction=Direction.T1_TO_T2, progress=False, device="cpu", overwrite=True)
    assert again.written == [first] and first.stat().st_mtime_ns != stamp


def test_folder_reruns_never_take_their_own_outputs_as_inputs(smoke_model: Path, tmp_path: Path) -> None:
    """Issue 24, item 4: `scan_t2` (and its confidence map) beside `scan` are passed over by name; a translation
    renamed or moved is passed over by its header; a measured T2w named `*_t2` without a source beside it, and a
    translation named as an input file, are converted."""
    folder = tmp_path / "scans"
    folder.mkdir()
    source = phantom_file(folder, "RAS", (1, 1))
    options = {"direction": Direction.T1_TO_T2, "progress": False, "device": "cpu"}
    first = convert([folder], smoke_model, confidence=True, **options)
    assert sorted(p.name for p in first.written) == ["RAS_11_t2.nii.gz", "RAS_11_t2_confidence.nii.gz"]
    rerun = convert([folder], smoke_model, confidence=True, skip_existing=True, **options)
    assert rerun.skipped == [folder / "RAS_11_t2.nii.gz"] and not rerun.written and not rerun.failed
    (folder / "renamed.nii.gz").write_bytes((folder / "RAS_11_t2.nii.gz").read_bytes())  # header says translation
    phantom = make_phantom(seed=6, shape=SMALL_SHAPE, spacing=SMALL_SPACING)
    write_nifti(folder / "subject_t2.nii.gz", phantom.t1, phantom.affine)  # a measured scan with an output-like name
    rerun = convert([folder], smoke_model, skip_existing=True, **options)
    assert sorted(p.name for p in rerun.written) == ["subject_t2_t2.nii.gz"]
    assert sorted(p.name for p in folder.glob("*_t2_t2*")) == ["subject_t2_t2.nii.gz"]
    assert not (folder / "renamed_t2.nii.gz").exists()
    back = convert([folder / "RAS_11_t2.nii.gz"], smoke_model, direction=Direction.T2_TO_T1, progress=False,
                   device="cpu")  # named as an input: converted like any scan
    assert [p.name for p in back.written] == ["RAS_11_t2_t1.nii.gz"]
    assert source.exists()


def test_png_translation_says_what_it_is(smoke_model: Path, tmp_path: Path) -> None:
    from mriganx.synthetic import write_subjects

    subject = write_subjects(tmp_path / "s", 1, seed=2, shape=SMALL_SHAPE, spacing=SMALL_SPACING, png=True)[0]
    png = sorted(Path(subject["png_t2"]).glob("*.png"))[0]
    report = convert([png], smoke_model, direction=Direction.T2_TO_T1, output=tmp_path / "o", progress=False, device="cpu")
    written_png = next(p for p in report.written if p.suffix == ".png")
    assert is_translation(written_png) and not is_translation(png) and not written_by_mriganx(png)
