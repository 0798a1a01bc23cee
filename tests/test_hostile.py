"""Hostile inputs (docs/errors.md, second table): never a silent wrong result, never a traceback.

Each case asserts the exit code 2, one error line naming the file and the reason, no output left, and the input
unchanged.
"""

from __future__ import annotations

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
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

from mriganx.cli import app
from mriganx.io import atomic_output
from mriganx.synthetic import make_phantom
from tests.helpers import DICOM_SERIES, SMALL_SHAPE, SMALL_SPACING, assert_one_line_error, needs_shared, write_nifti

runner = CliRunner()


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def t1_volume(folder: Path, name: str = "scan.nii.gz") -> Path:
    phantom = make_phantom(seed=3, shape=SMALL_SHAPE, spacing=SMALL_SPACING)
    return write_nifti(folder / name, phantom.t1, phantom.affine)


# -- options that would train on nothing or write nothing ----------------------------------------------------------

@pytest.mark.parametrize("value", ["-3", "0"])
def test_convert_refuses_a_batch_size_below_one(value: str, smoke_model: Path, tmp_path: Path) -> None:
    source = t1_volume(tmp_path)
    result = runner.invoke(app, ["convert", str(source), "-m", str(smoke_model), "-o", str(tmp_path / "o"),
                                 "--direction", "t1-to-t2", "--batch-size", value])
    assert_one_line_error(result, "--batch-size", value)
    assert files_in(tmp_path / "o") == []


@pytest.mark.parametrize("option,value,field", [("--batch-size", "-2", "batch_size"), ("--batch-size", "0", "batch_size"),
                                                ("--epochs", "-1", "epochs"), ("--steps", "0", "steps")])
def test_train_refuses_settings_that_train_on_nothing(option: str, value: str, field: str,
                                                      phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--t1-dir", str(phantom_dirs["t1"]), "--t2-dir", str(phantom_dirs["t2"]),
                                 "--out", str(tmp_path / "run"), "--config", "smoke", option, value])
    assert_one_line_error(result, field)
    assert not (tmp_path / "run" / "model.pt").exists()


def test_train_refuses_an_output_inside_its_data(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    t1 = tmp_path / "t1"
    shutil.copytree(phantom_dirs["t1"], t1)
    result = runner.invoke(app, ["train", "--t1-dir", str(t1), "--t2-dir", str(phantom_dirs["t2"]), "--out",
                                 str(t1 / "run"), "--config", "smoke", "--max-steps", "1"])
    assert_one_line_error(result, "inside the training folder")
    assert not (t1 / "run").exists()


def test_resume_refuses_swapped_folders_and_another_network(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    base = ["--out", str(run), "--config", "smoke", "--max-steps", "2", "--device", "cpu"]
    result = runner.invoke(app, ["train", "--t1-dir", str(phantom_dirs["t1"]), "--t2-dir", str(phantom_dirs["t2"]), *base])
    assert result.exit_code == 0, result.output
    checkpoint = (run / "checkpoints" / "last.pt").read_bytes()
    swapped = ["train", "--t1-dir", str(phantom_dirs["t2"]), "--t2-dir", str(phantom_dirs["t1"]), "--out", str(run),
               "--max-steps", "4", "--resume"]
    assert_one_line_error(runner.invoke(app, swapped), "swapped")
    other = ["train", "--t1-dir", str(phantom_dirs["t1"]), "--t2-dir", str(phantom_dirs["t2"]), "--out", str(run),
             "--config", "cpu", "--resume"]
    assert_one_line_error(runner.invoke(app, other), "model.ngf")
    assert (run / "checkpoints" / "last.pt").read_bytes() == checkpoint


# -- NIfTI files that are not one real-valued image -----------------------------------------------------------------

def rgb_nifti(tmp: Path) -> Path:
    rgb = np.zeros((20, 20, 20), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp / "rgb.nii.gz")
    return tmp / "rgb.nii.gz"


def complex_nifti(tmp: Path) -> Path:
    data = (np.random.default_rng(0).random((20, 20, 20)) * (1 + 1j)).astype(np.complex64)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp / "complex.nii.gz")
    return tmp / "complex.nii.gz"


def huge_header(tmp: Path) -> Path:
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape((30000, 30000, 30000))
    (tmp / "huge.nii").write_bytes(header.binaryblock + bytes(36))
    return tmp / "huge.nii"


def huge_header_gz(tmp: Path) -> Path:
    import gzip

    (tmp / "huge.nii.gz").write_bytes(gzip.compress(huge_header(tmp).read_bytes()))
    return tmp / "huge.nii.gz"


def link_loop(tmp: Path) -> Path:
    (tmp / "a.nii.gz").symlink_to(tmp / "b.nii.gz")
    (tmp / "b.nii.gz").symlink_to(tmp / "a.nii.gz")
    return tmp / "a.nii.gz"


NIFTI_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "RGB NIfTI": (rgb_nifti, "colour"),
    "complex NIfTI": (complex_nifti, "complex"),
    "30000^3 voxels declared in a small file": (huge_header, "header declares"),
    "the same, gzipped": (huge_header_gz, "header declares"),
    "symlink loop": (link_loop, "link loop"),
}


@pytest.mark.parametrize("case", list(NIFTI_CASES))
def test_nifti_that_is_not_one_real_image(case: str, smoke_model: Path, tmp_path: Path) -> None:
    make, message = NIFTI_CASES[case]
    source = make(tmp_path)
    result = runner.invoke(app, ["convert", str(source), "-m", str(smoke_model), "-o", str(tmp_path / "o"),
                                 "--direction", "t1-to-t2"])
    assert_one_line_error(result, message, source.name)
    assert files_in(tmp_path / "o") == []


def test_header_warnings_name_the_file(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    from mriganx.io import load_image

    header = nib.Nifti1Header()
    header.set_data_shape((20, 20, 20))
    header.set_data_dtype(np.float32)
    header["pixdim"][1] = 0  # nibabel: "pixdim[1,2,3] should be non-zero; setting 0 dims to 1"
    header["qform_code"] = 1
    (tmp_path / "odd.nii").write_bytes(header.binaryblock + bytes(4) + np.ones(8000, np.float32).tobytes())
    with caplog.at_level("WARNING", logger="mriganx.io"):
        load_image(tmp_path / "odd.nii")
    messages = [r.getMessage() for r in caplog.records if r.name == "mriganx.io"]
    assert any("odd.nii" in m and "pixdim" in m for m in messages), messages


# -- DICOM series that are not one regular grid -----------------------------------------------------------------------

def series_copy(tmp: Path, change: Callable[[list[pydicom.Dataset]], None] | None = None,
                drop: int | None = None) -> Path:
    folder = tmp / "series"
    folder.mkdir()
    files = sorted(DICOM_SERIES.glob("*.dcm"))
    datasets = [pydicom.dcmread(f) for f in files]
    if change is not None:
        change(datasets)
    for index, (file, ds) in enumerate(zip(files, datasets)):
        if index != drop:
            ds.save_as(folder / file.name)
    return folder


def _tilt_one(datasets: list[pydicom.Dataset]) -> None:
    datasets[4].ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # a coronal slice among axial ones


def _no_positions(datasets: list[pydicom.Dataset]) -> None:
    for ds in datasets:
        del ds.ImagePositionPatient


def _zero_spacing(datasets: list[pydicom.Dataset]) -> None:
    for ds in datasets:
        ds.PixelSpacing = [0, 0]


def _mixed_spacing(datasets: list[pydicom.Dataset]) -> None:
    datasets[7].PixelSpacing = [0.5, 0.5]


DICOM_CASES: dict[str, tuple[dict, str]] = {
    "a missing slice": ({"drop": 5}, "unevenly spaced"),
    "two orientations": ({"change": _tilt_one}, "different orientations"),
    "no ImagePositionPatient": ({"change": _no_positions}, "ImagePositionPatient"),
    "PixelSpacing 0": ({"change": _zero_spacing}, "PixelSpacing"),
    "mixed PixelSpacing": ({"change": _mixed_spacing}, "different pixel sizes"),
}


@needs_shared(DICOM_SERIES)
@pytest.mark.parametrize("case", list(DICOM_CASES))
def test_dicom_series_off_a_regular_grid_is_refused(case: str, smoke_model: Path, tmp_path: Path) -> None:
    options, message = DICOM_CASES[case]
    folder = series_copy(tmp_path, **options)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = runner.invoke(app, ["convert", str(folder), "-m", str(smoke_model), "-o", str(tmp_path / "o"),
                                 "--direction", "t1-to-t2"])
    line = assert_one_line_error(result, message)
    assert "series" in line  # the folder or one of its files is named
    assert files_in(tmp_path / "o") == []
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@needs_shared(DICOM_SERIES)
def test_mixed_matrix_sizes_are_named_as_such(tmp_path: Path) -> None:
    from mriganx.errors import MriganxError
    from mriganx.io import load_image

    def shrink(datasets: list[pydicom.Dataset]) -> None:
        small = datasets[2].pixel_array[::2, ::2].copy()
        datasets[2].PixelData = small.tobytes()
        datasets[2].Rows, datasets[2].Columns = small.shape

    with pytest.raises(MriganxError, match="different matrix sizes"):
        load_image(series_copy(tmp_path, change=shrink))


# -- outputs ------------------------------------------------------------------------------------------------------------

def test_png_output_uses_the_whole_8bit_range_without_clipping(smoke_model: Path, tmp_path: Path) -> None:
    phantom = make_phantom(seed=4, shape=SMALL_SHAPE, spacing=SMALL_SPACING)
    from mriganx.frame import to_slices
    from mriganx.io import save_png, to_uint8

    slice_ = to_slices(phantom.t1, phantom.affine)[SMALL_SHAPE[2] // 2]
    source = save_png(to_uint8(slice_, 0, slice_.max()), tmp_path / "slice.png")
    result = runner.invoke(app, ["convert", str(source), "-m", str(smoke_model), "-o", str(tmp_path / "o"),
                                 "--direction", "t1-to-t2"])
    assert result.exit_code == 0, result.output
    with PILImage.open(tmp_path / "o" / "slice_t2.png") as png:
        pixels = np.asarray(png)
    head = slice_ > 0
    assert (pixels[head] == 255).mean() < 0.5, "translation blown to white"


def test_outputs_with_one_name_do_not_overwrite_each_other(smoke_model: Path, tmp_path: Path) -> None:
    t1_volume(tmp_path, "a.nii.gz")
    nib.save(nib.load(tmp_path / "a.nii.gz"), tmp_path / "a.nii")  # the same stem, another extension
    result = runner.invoke(app, ["convert", str(tmp_path), "-m", str(smoke_model), "--direction", "t1-to-t2"])
    assert_one_line_error(result, "same output name")
    assert sorted(p.name for p in tmp_path.glob("a_t2*")) == ["a_t2.nii.gz"]


def test_a_folder_named_like_an_image_does_not_stop_the_batch(smoke_model: Path, tmp_path: Path) -> None:
    t1_volume(tmp_path, "good.nii.gz")
    (tmp_path / "weird.nii.gz").mkdir()
    result = runner.invoke(app, ["convert", str(tmp_path), "-m", str(smoke_model), "--direction", "t1-to-t2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "good_t2.nii.gz").is_file()


def test_evaluate_refuses_a_mask_of_another_shape(smoke_model: Path, phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    mask = write_nifti(tmp_path / "mask.nii.gz", np.ones((10, 10, 10)), np.eye(4))
    result = runner.invoke(app, ["evaluate", "-m", str(smoke_model), "--source", str(phantom_dirs["held_t1"]), "--target",
                                 str(phantom_dirs["held_t2"]), "--mask", str(mask), "-o", str(tmp_path / "ev")])
    assert_one_line_error(result, "mask.nii.gz", "shape")


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_outputs_follow_the_umask(umask: int, mode: int, tmp_path: Path) -> None:
    previous = os.umask(umask)
    try:
        with atomic_output(tmp_path / "out.bin") as temporary:
            temporary.write_bytes(b"data")
    finally:
        os.umask(previous)
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == mode


def test_sigterm_during_a_write_leaves_no_part_file(tmp_path: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from mriganx.cli import _terminate\n"
        "from mriganx.io import atomic_output\n"
        "signal.signal(signal.SIGTERM, _terminate)\n"
        f"with atomic_output(Path({str(tmp_path)!r}) / 'out.nii.gz') as temporary:\n"
        "    temporary.write_bytes(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    signal.pause()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert done.returncode == 128 + signal.SIGTERM
    assert files_in(tmp_path) == []


def test_part_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.nii.gz.part-{int(dead.stdout)}.abc.nii.gz"
    stale.write_bytes(b"left by a killed writer")
    with atomic_output(tmp_path / "out.nii.gz") as temporary:
        temporary.write_bytes(b"new")
    assert files_in(tmp_path) == ["out.nii.gz"]


def test_a_model_with_nan_weights_is_refused(smoke_model: Path, tmp_path: Path) -> None:
    payload = torch.load(smoke_model, weights_only=True)
    first = next(iter(payload["generators"]["t1-to-t2"]))
    payload["generators"]["t1-to-t2"][first] = torch.full_like(payload["generators"]["t1-to-t2"][first], float("nan"))
    torch.save(payload, tmp_path / "nan.pt")
    source = t1_volume(tmp_path)
    result = runner.invoke(app, ["convert", str(source), "-m", str(tmp_path / "nan.pt"), "-o", str(tmp_path / "o")])
    assert_one_line_error(result, "nan.pt", "NaN")
    assert files_in(tmp_path / "o") == []


# -- issue 24, the second pass: --overwrite, outputs inside inputs, other spellings of one place -------------------

def test_export_through_links_and_other_spellings_never_reaches_the_run(smoke_model: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    run = smoke_model.parent
    before = files_in(run)
    (tmp_path / "runlink").symlink_to(run)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "model.pt").symlink_to(smoke_model)
    export = ["export", "-f", "torchscript", "--overwrite"]
    for model, out in ((smoke_model, tmp_path / "runlink"), (run / ".." / run.name / "model.pt", f"{run}/"),
                       (tmp_path / "elsewhere" / "model.pt", run / "ex")):
        assert_one_line_error(runner.invoke(app, [*export, str(model), "-o", str(out)]), "folder of the model")
    assert files_in(run) == before
    exported = tmp_path / "ex"
    assert runner.invoke(app, ["export", str(smoke_model), "-f", "torchscript", "-o", str(exported)]).exit_code == 0
    (tmp_path / "exlink").symlink_to(exported)
    (tmp_path / "afile").write_text("x")
    for out, why in (("exlink", "symbolic link"), ("afile", "not a folder"), ("", "no mriganx.json")):
        monkeypatch.chdir(tmp_path)
        assert_one_line_error(runner.invoke(app, [*export, str(smoke_model), "-o", out]), why)
    (exported / "mriganx.json").write_text("{")  # an edited boundary file: no longer recognisably an export
    assert_one_line_error(runner.invoke(app, [*export, str(smoke_model), "-o", str(exported)]), "no mriganx.json")
    assert (exported / "t1-to-t2.ts").is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_convert_outputs_that_spell_an_input_or_a_foreign_file_are_refused(smoke_model: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_dicom_out import small_series

    monkeypatch.chdir(tmp_path)
    scan = t1_volume(tmp_path)
    series = small_series(tmp_path / "series")
    (tmp_path / "scanlink.nii.gz").symlink_to(scan)
    os.link(scan, tmp_path / "hard.nii.gz")
    (tmp_path / "serieslink").symlink_to(series)
    (tmp_path / "d.nii.gz").mkdir()
    (tmp_path / "series_t2_dicom").mkdir()  # empty, but not a series mriganx wrote
    common = ["-m", str(smoke_model), "--direction", "t1-to-t2", "--overwrite"]
    cases = [("scan.nii.gz", "sub/../scan.nii.gz", "nifti", "is the input"),
             ("scan.nii.gz", "scanlink.nii.gz", "nifti", "is the input"),
             ("scan.nii.gz", "hard.nii.gz", "nifti", "not an output mriganx wrote"),
             ("scan.nii.gz", "d.nii.gz", "nifti", "not an output mriganx wrote"),
             ("series", "series/", "dicom", "inside the input series folder"),
             ("series", "serieslink", "both", "inside the input series folder"),
             ("series", "series/../series", "dicom", "inside the input series folder"),
             ("series", ".", "dicom", "not an output mriganx wrote")]
    before = {name: files_in(tmp_path / name) for name in ("series", "d.nii.gz", "series_t2_dicom")}
    for source, output, fmt, why in cases:
        result = runner.invoke(app, ["convert", source, *common, "-o", output, "--output-format", fmt])
        assert_one_line_error(result, why)
    assert {name: files_in(tmp_path / name) for name in before} == before
    assert scan.read_bytes() == (tmp_path / "hard.nii.gz").read_bytes() and not list(tmp_path.glob("*_t2.nii.gz"))


def test_an_output_folder_inside_the_input_folder_is_passed_over_on_rerun(smoke_model: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    t1_volume(tmp_path / "in", "a.nii.gz")
    command = ["convert", str(tmp_path / "in"), "-m", str(smoke_model), "--direction", "t1-to-t2",
               "-o", str(tmp_path / "in" / "out")]
    assert runner.invoke(app, command).exit_code == 0
    result = runner.invoke(app, [*command, "--skip-existing"])
    assert result.exit_code == 0, result.output
    assert files_in(tmp_path / "in") == ["a.nii.gz", "a_t2.nii.gz", "out"]


def test_bids_output_into_a_folder_of_other_files_is_refused(smoke_model: Path, tmp_path: Path) -> None:
    anat = tmp_path / "ds" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    t1_volume(anat, "sub-01_T1w.nii.gz")
    (tmp_path / "ds" / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("years of work")
    result = runner.invoke(app, ["convert", str(tmp_path / "ds"), "-m", str(smoke_model), "-o", str(tmp_path / "thesis")])
    assert_one_line_error(result, "thesis", "no dataset_description.json of mriganx translations")
    assert files_in(tmp_path / "thesis") == ["chapter1.tex"]
