"""Every bad input gets one line on stderr (``error: <path>: ...``), exit code 2, and no partial output.

Each case here is a row of docs/errors.md.
"""

from __future__ import annotations

import errno
import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from mriganx.cli import app
from mriganx.synthetic import make_phantom
from tests.helpers import SMALL_SHAPE, SMALL_SPACING, assert_one_line_error, write_nifti

runner = CliRunner()


def phantom(folder: Path, name: str = "scan.nii.gz", data: np.ndarray | None = None, affine: np.ndarray | None = None) -> Path:
    p = make_phantom(seed=3, shape=SMALL_SHAPE, spacing=SMALL_SPACING)
    return write_nifti(folder / name, p.t1 if data is None else data, p.affine if affine is None else affine)


def missing(tmp: Path) -> Path:
    return tmp / "nowhere.nii.gz"


def empty_folder(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


def only_notes(tmp: Path) -> Path:
    (tmp / "notes").mkdir()
    (tmp / "notes" / "readme.txt").write_text("no images here")
    return tmp / "notes"


def corrupt_gzip(tmp: Path) -> Path:
    good = phantom(tmp, "good.nii.gz").read_bytes()
    (tmp / "corrupt.nii.gz").write_bytes(good[:100] + bytes(200) + good[300:])
    return tmp / "corrupt.nii.gz"


def truncated_nifti(tmp: Path) -> Path:
    raw = gzip.decompress(phantom(tmp, "good.nii.gz").read_bytes())
    (tmp / "truncated.nii").write_bytes(raw[: len(raw) // 3])
    return tmp / "truncated.nii"


def lying_header(tmp: Path) -> Path:
    image = nib.load(phantom(tmp, "good.nii.gz"))
    header = image.header.copy()
    header.set_data_shape((SMALL_SHAPE[0] * 2, SMALL_SHAPE[1], SMALL_SHAPE[2]))  # claims twice the voxels it has
    raw = gzip.decompress((tmp / "good.nii.gz").read_bytes())
    (tmp / "liar.nii").write_bytes(header.binaryblock + raw[348:])
    return tmp / "liar.nii"


def truncated_dicom(tmp: Path) -> Path:
    return Path(shutil.copy(get_testdata_file("MR_truncated.dcm"), tmp / "truncated.dcm"))


def two_series(tmp: Path) -> Path:
    folder = tmp / "dicom"
    folder.mkdir()
    for index in range(2):
        ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
        ds.SeriesInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(folder / f"im{index}.dcm")
    return folder


def four_d(tmp: Path) -> Path:
    return write_nifti(tmp / "fmri.nii.gz", np.ones((20, 20, 20, 5), np.float32), np.eye(4))


def with_nan(tmp: Path) -> Path:
    data = make_phantom(seed=3, shape=SMALL_SHAPE, spacing=SMALL_SPACING).t1.copy()
    data[10, 10, 10] = np.nan
    return phantom(tmp, "nan.nii.gz", data)


def constant(tmp: Path) -> Path:
    return phantom(tmp, "constant.nii.gz", np.full(SMALL_SHAPE, 7.0, np.float32))


def too_small(tmp: Path) -> Path:
    return write_nifti(tmp / "tiny.nii.gz", np.random.default_rng(0).random((4, 5, 6)), np.eye(4))


def singular(tmp: Path) -> Path:
    header = nib.Nifti1Header()
    header.set_data_shape((20, 20, 20))
    header.set_data_dtype(np.float32)
    header.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=1)  # the third axis has no extent in space
    data = np.random.default_rng(0).random((20, 20, 20)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, None, header=header), tmp / "singular.nii.gz")
    return tmp / "singular.nii.gz"


def sheared(tmp: Path) -> Path:
    affine = np.eye(4)
    affine[0, 1] = 0.5
    return phantom(tmp, "sheared.nii.gz", affine=affine)


BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing path": (missing, "does not exist"),
    "empty folder": (empty_folder, "holds no"),
    "folder of non-images": (only_notes, "holds no"),
    "corrupt gzip": (corrupt_gzip, "corrupt"),
    "truncated NIfTI": (truncated_nifti, "truncated"),
    "header lies about size": (lying_header, "liar.nii"),
    "truncated DICOM": (truncated_dicom, "truncated"),
    "two DICOM series": (two_series, "--series"),
    "4D NIfTI": (four_d, "4D"),
    "NaN voxels": (with_nan, "NaN"),
    "constant image": (constant, "constant"),
    "smaller than the network takes": (too_small, "at least"),
    "singular affine": (singular, "singular"),
    "sheared affine": (sheared, "orthogonal"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_convert_bad_input(case: str, smoke_model: Path, tmp_path: Path) -> None:
    make, message = BAD_INPUTS[case]
    source = make(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["convert", str(source), "--model", str(smoke_model), "-o", str(out), "--direction", "t1-to-t2"])
    assert_one_line_error(result, message, source.name)
    assert not out.exists() or not any(out.iterdir()), "no output for a bad input"


@pytest.mark.parametrize("case", ["corrupt gzip", "NaN voxels", "4D NIfTI", "truncated DICOM"])
def test_train_bad_image_in_a_folder(case: str, phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "t1"
    shutil.copytree(phantom_dirs["t1"], folder)
    bad = BAD_INPUTS[case][0](tmp_path)
    shutil.move(str(bad), folder / bad.name)
    result = runner.invoke(app, ["train", "--t1-dir", str(folder), "--t2-dir", str(phantom_dirs["t2"]),
                                 "--out", str(tmp_path / "run"), "--config", "smoke", "--max-steps", "1"])
    assert_one_line_error(result, bad.name)
    assert not (tmp_path / "run" / "model.pt").exists()


def test_evaluate_and_synth_errors(smoke_model: Path, phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--model", str(smoke_model), "--source", str(phantom_dirs["held_t1"]),
                                 "--target", str(tmp_path / "gone.nii.gz"), "--out", str(tmp_path / "ev")])
    assert_one_line_error(result, "gone.nii.gz", "does not exist")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = runner.invoke(app, ["synth", str(blocker / "sub"), "--subjects", "1", "--size", "20,24,20", "--spacing", "8"])
    assert_one_line_error(result, "a_file")
    result = runner.invoke(app, ["synth", str(tmp_path / "s"), "--size", "20,24"])
    assert_one_line_error(result, "--size")


def _model_variant(smoke_model: Path, tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.pt"
    if kind == "other architecture":
        payload = torch.load(smoke_model, weights_only=True)
        payload["model"]["n_blocks"] += 2
        torch.save(payload, path)
    elif kind == "not a model":
        path.write_bytes(b"PK\x03\x04 definitely not torch")
    elif kind == "pickled code":
        torch.save({"format": "mriganx-model", "hook": shutil.rmtree}, path)  # a function: code, not data
    elif kind == "a checkpoint":
        torch.save({"format": "mriganx-checkpoint"}, path)
    elif kind == "future version":
        payload = torch.load(smoke_model, weights_only=True)
        payload["format_version"] = 99
        torch.save(payload, path)
    return path


@pytest.mark.parametrize("kind,message", [("other architecture", "do not fit"), ("not a model", "not a loadable"),
                                          ("pickled code", "pickled code"), ("a checkpoint", "not a mriganx model"),
                                          ("future version", "version 99")])
def test_bad_model_files(kind: str, message: str, smoke_model: Path, phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    model = _model_variant(smoke_model, tmp_path, kind)
    result = runner.invoke(app, ["convert", str(phantom_dirs["held_t1"]), "--model", str(model), "-o", str(tmp_path / "o")])
    assert_one_line_error(result, message, model.name)
    assert not (tmp_path / "o").exists()


def test_outputs(smoke_model: Path, phantom_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = phantom(tmp_path)
    before = source.read_bytes()
    target = tmp_path / "out.nii.gz"
    target.write_text("precious")
    result = runner.invoke(app, ["convert", str(source), "--model", str(smoke_model), "-o", str(target)])
    assert_one_line_error(result, "--overwrite", "out.nii.gz")
    assert target.read_text() == "precious"
    blocker = tmp_path / "plain_file"
    blocker.write_text("x")
    result = runner.invoke(app, ["convert", str(source), "--model", str(smoke_model), "-o", str(blocker / "out")])
    assert_one_line_error(result, "plain_file")

    # A full disk while writing: the writer fails part-way; nothing partial is left and the input is untouched.
    def full_disk(image: nib.Nifti1Image, filename: Path) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nib, "save", full_disk)
    out = tmp_path / "full"
    result = runner.invoke(app, ["convert", str(source), "--model", str(smoke_model), "-o", str(out)])
    assert_one_line_error(result, "No space left on device")
    assert not out.exists() or not any(out.iterdir())
    assert source.read_bytes() == before


def test_debug_shows_the_traceback(smoke_model: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--debug", "convert", str(tmp_path / "none.nii.gz"), "--model", str(smoke_model)])
    assert result.exit_code != 0 and result.exception is not None
