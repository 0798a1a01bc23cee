"""Readers and writers: geometry in, geometry out, clear errors for bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from mriganx.errors import MriganxError
from mriganx.io import ImageKind, load_image, save_like
from tests.helpers import DICOM_SERIES, SEED_SET, needs_shared, write_nifti

AFFINE = np.array([[-1.0, 0, 0, 90], [0, -1.2, 0, 100], [0, 0, 2.0, -70], [0, 0, 0, 1]])


def test_nifti_3d_roundtrip_keeps_header_geometry(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32) * 100
    source = write_nifti(tmp_path / "in.nii.gz", data, AFFINE, qform_code=2, sform_code=4)
    image = load_image(source)
    assert image.kind is ImageKind.NIFTI and image.array.shape == (6, 7, 8)
    np.testing.assert_allclose(image.affine, AFFINE)
    out = save_like(image.array * 2, image, tmp_path / "out.nii.gz")
    back = nib.load(out)
    assert back.header["sform_code"] == 4 and back.header["qform_code"] == 2
    np.testing.assert_allclose(back.affine, AFFINE, atol=1e-6)
    np.testing.assert_allclose(back.get_fdata(), data * 2, rtol=1e-6)
    raw = nib.Nifti1Header.from_fileobj(nib.openers.Opener(str(out)))
    assert raw.get_data_dtype() == np.float32
    assert (float(raw["scl_slope"]), float(raw["scl_inter"])) == (1.0, 0.0)


def test_nifti_2d_slice_is_read_as_one_slice_and_written_back_2d(tmp_path: Path) -> None:
    source = tmp_path / "slice.nii"
    nib.save(nib.Nifti1Image(np.ones((9, 11), np.float32), np.eye(4)), source)
    image = load_image(source)
    assert image.array.shape == (9, 11, 1)
    out = save_like(image.array, image, tmp_path / "slice_out.nii.gz")
    assert nib.load(out).shape == (9, 11)


def test_4d_with_several_volumes_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)), source)
    with pytest.raises(MriganxError, match="4D"):
        load_image(source)


def test_nan_voxels_are_refused(tmp_path: Path) -> None:
    data = np.ones((4, 4, 4), np.float32)
    data[1, 1, 1] = np.nan
    with pytest.raises(MriganxError, match="NaN"):
        load_image(write_nifti(tmp_path / "nan.nii.gz", data, np.eye(4)))


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(MriganxError, match="does not exist"):
        load_image(tmp_path / "nope.nii.gz")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(MriganxError, match="not a NIfTI, DICOM or PNG"):
        load_image(text)


def test_truncated_and_corrupt_nifti(tmp_path: Path) -> None:
    good = write_nifti(tmp_path / "good.nii.gz", np.random.default_rng(0).random((20, 20, 20)), np.eye(4))
    raw = gzip.decompress(good.read_bytes())
    truncated = tmp_path / "truncated.nii"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(MriganxError, match="truncated.nii"):
        load_image(truncated)
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(good.read_bytes()[:60] + b"\x00" * 200)
    with pytest.raises(MriganxError, match="corrupt.nii.gz"):
        load_image(corrupt)


def test_writer_refuses_to_overwrite(tmp_path: Path) -> None:
    source = write_nifti(tmp_path / "in.nii.gz", np.ones((4, 4, 4)), np.eye(4))
    image = load_image(source)
    with pytest.raises(MriganxError, match="input"):
        save_like(image.array, image, source, overwrite=True)
    out = save_like(image.array, image, tmp_path / "out.nii.gz")
    with pytest.raises(MriganxError, match="--overwrite"):
        save_like(image.array, image, out)
    assert not list(tmp_path.glob(".*part*")), "no temporary file may be left behind"


def test_pydicom_mr_small_reads_with_lps_to_ras() -> None:
    path = Path(get_testdata_file("MR_small.dcm"))
    image = load_image(path)
    ds = pydicom.dcmread(path)
    assert image.kind is ImageKind.DICOM and image.array.shape == (ds.Columns, ds.Rows, 1)
    position = np.array(ds.ImagePositionPatient, dtype=float)
    np.testing.assert_allclose(image.affine[:3, 3], position * [-1, -1, 1], atol=1e-4)
    # Pixel (row 0, column 1) lies one column step along the row direction cosine.
    row_dir = np.array(ds.ImageOrientationPatient[:3], dtype=float)
    world = image.affine @ [1, 0, 0, 1]
    np.testing.assert_allclose(world[:3], (position + row_dir * float(ds.PixelSpacing[1])) * [-1, -1, 1], atol=1e-4)
    np.testing.assert_allclose(image.array[:, :, 0].T, ds.pixel_array, atol=1e-3)


@needs_shared(SEED_SET)
def test_reference_pngs_load_as_217_by_181() -> None:
    files = sorted((SEED_SET / "trainT1").glob("*.png"))
    assert len(files) == 43
    for path in files[:5]:
        image = load_image(path)
        assert image.kind is ImageKind.PNG and image.array.shape == (217, 181, 1)
        assert image.array.max() <= 255 and image.array.min() >= 0


@needs_shared(DICOM_SERIES)
def test_shared_dicom_series_stacks_with_its_geometry() -> None:
    image = load_image(DICOM_SERIES)
    files = sorted(DICOM_SERIES.glob("*.dcm"))
    datasets = sorted((pydicom.dcmread(f) for f in files), key=lambda d: int(d.InstanceNumber))
    assert image.array.shape == (512, 512, 10)
    first = datasets[0]
    iop = np.array(first.ImageOrientationPatient, dtype=float)
    spacing = np.array(first.PixelSpacing, dtype=float)  # (row spacing, column spacing)
    normal = np.cross(iop[:3], iop[3:])
    positions = np.array([d.ImagePositionPatient for d in datasets], dtype=float)
    order = np.argsort(positions @ normal)
    positions = positions[order]
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * spacing[1]
    lps[:3, 1] = iop[3:] * spacing[0]
    lps[:3, 2] = (positions[-1] - positions[0]) / (len(positions) - 1)
    lps[:3, 3] = positions[0]
    np.testing.assert_allclose(image.affine, np.diag([-1, -1, 1, 1]) @ lps, atol=1e-4)
    ordered = [datasets[i] for i in order]
    np.testing.assert_allclose(image.array[:, :, 3].T, ordered[3].pixel_array * float(getattr(ordered[3], "RescaleSlope", 1))
                               + float(getattr(ordered[3], "RescaleIntercept", 0)), atol=1e-3)
    assert sitk.ReadImage(str(files[0])).GetSize()[:2] == (512, 512)


def test_truncated_dicom_is_refused() -> None:
    path = Path(get_testdata_file("MR_truncated.dcm"))
    with pytest.raises(MriganxError, match="truncated"):
        load_image(path)


def test_folder_with_two_dicom_series_lists_them(tmp_path: Path) -> None:
    source = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    uids = []
    for index in range(2):
        ds = source.copy()
        ds.SeriesInstanceUID = pydicom.uid.generate_uid()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        uids.append(ds.SeriesInstanceUID)
        ds.save_as(tmp_path / f"im{index}.dcm")
    with pytest.raises(MriganxError, match="2 DICOM series") as error:
        load_image(tmp_path)
    assert all(uid in str(error.value) for uid in uids)
    assert load_image(tmp_path, series=uids[1]).array.shape == (64, 64, 1)
