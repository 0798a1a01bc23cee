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
from mriganx.io import Image, ImageKind, load_image
from tests.helpers import DICOM_SERIES, assert_one_line_error, needs_shared

runner = CliRunner()
GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness")


def small_series(folder: Path, slices: int = 3, series_number: int = 7) -> Path:
    """``slices`` copies of pydicom's 64x64 MR_small stacked 0.8 mm apart: one small regular series."""
    source = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    series_uid = pydicom.uid.generate_uid()
    folder.mkdir(parents=True)
    for k in range(slices):
        ds = copy.deepcopy(source)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, pydicom.uid.generate_uid()
        ds.SeriesNumber, ds.InstanceNumber = series_number, k + 1
        ds.ImagePositionPatient = [-83.9063, -91.2, 6.6406 + 0.8 * k]
        ds.save_as(folder / f"im{k}.dcm")
    return folder


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
    assert steps <= 0.5 + 1e-3, steps  # rounding to the nearest stored integer: half a step at most
    print(f"dcm2niix round trip: affine {affine_mm:.2e} mm, pixels {steps:.4f} rescale steps (slope {slope})")
    # mriganx's own reader agrees too: the series sits exactly on the input's grid.
    back, source = load_image(converted["dicom"]), load_image(DICOM_SERIES)
    np.testing.assert_allclose(back.affine, source.affine, atol=1e-6)


@needs_shared(DICOM_SERIES)
def test_series_tags_say_synthetic_and_keep_patient_study_and_geometry(converted: dict[str, Path]) -> None:
    inputs = {ds.SOPInstanceUID: ds for ds in headers(DICOM_SERIES)}
    written = headers(converted["dicom"])
    assert len(written) == len(inputs) == 10
    original = next(iter(inputs.values()))
    assert len({ds.SeriesInstanceUID for ds in written}) == 1
    assert written[0].SeriesInstanceUID != original.SeriesInstanceUID
    assert len({ds.SOPInstanceUID for ds in written}) == 10 and not {ds.SOPInstanceUID for ds in written} & set(inputs)
    for ds in written:
        for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "PatientName", "PatientSex"):
            assert ds[keyword].value == original[keyword].value, keyword
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
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
    assert np.abs(back.array - values).max() <= slope / 2 * 1.001
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
