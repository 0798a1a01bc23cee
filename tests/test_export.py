"""``mriganx export``: TorchScript, ONNX (checked with onnxruntime) and a MONAI bundle run by MONAI's own runner,
each against mriganx's own translation; and the folder appearing whole or not at all."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.testing import data_path
from typer.testing import CliRunner

from mriganx.cli import app
from mriganx.config import DataConfig, Direction, ExportFormat
from mriganx.export import EXPORTED_FILES, example_input, export_model, generator
from mriganx.io import load_image
from mriganx.modelfile import ModelFile, default_model
from mriganx.slices import network_view
from tests.helpers import assert_one_line_error, write_nifti

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
REAL_ANATOMY = Path(data_path) / "anatomical.nii"  # a real T1w brain that nibabel ships (33x41x25, 2 mm)


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model in ONNX (both directions; the slowest export, done once)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    return export_model(None, ExportFormat.ONNX, tmp_path_factory.mktemp("export") / "onnx")[0].parent


def real_slices(model: ModelFile) -> torch.Tensor:
    """A real scan as the networks see it: ``(n, 1, rows, cols)``, padded to the multiple the network needs."""
    view = network_view(load_image(REAL_ANATOMY), model.data)
    slices = torch.from_numpy(view.slices)[:, None]
    rows, cols = slices.shape[2:]
    multiple = model.data.pad_multiple
    return torch.nn.functional.pad(slices, (0, (-cols) % multiple, 0, (-rows) % multiple), value=-1.0)


def test_torchscript_files_match_the_generators(smoke_model: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(smoke_model), "--format", "torchscript", "-o", str(tmp_path / "ts")])
    assert result.exit_code == 0, result.output
    model = ModelFile.load(smoke_model)
    x = example_input(model, batch=3, size=(40, 28))
    for direction in Direction:
        extra = {"mriganx.json": ""}
        scripted = torch.jit.load(str(tmp_path / "ts" / f"{direction.value}.ts"), _extra_files=extra)
        out = scripted(x)
        assert out.shape == x.shape
        assert torch.allclose(out, generator(model, direction)(x), atol=1e-6)
        assert json.loads(extra["mriganx.json"])["output"]["intensity"]["t2"] == model.intensity["t2"].to_list()


def test_onnx_matches_torch_on_real_slices(onnx_export: Path) -> None:
    import onnx
    import onnxruntime as ort

    model = ModelFile.load(default_model())
    slices = real_slices(model)
    for direction in Direction:
        path = onnx_export / f"{direction.value}.onnx"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            expected = generator(model, direction)(slices).numpy()
        got = session.run(None, {"slices": slices.numpy()})[0]
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) <= 1e-4
        # Dynamic axes: another batch size and slice size in the same file.
        small = slices[:3, :, :32, :48].numpy()
        assert session.run(None, {"slices": small})[0].shape == small.shape
        assert {p.name for p in onnx_export.iterdir()} <= EXPORTED_FILES
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert json.loads(meta["mriganx"])["model"]["weights_sha256"] == model.weights_sha256()


@pytest.mark.parametrize("air_floor", [0.0, 0.04])
def test_onnx_example_in_the_docs_matches_convert(onnx_export: Path, tmp_path: Path, air_floor: float) -> None:
    """docs/examples/onnx_translate.py (numpy + onnxruntime, no mriganx) gives mriganx convert's numbers wherever
    its plain-threshold head mask agrees with mriganx's. With air that is not black (a floor at 4 % of the range,
    as in a template; the field of view then holds the whole head, so the slices' borders are air) both follow the
    air level and leave the air as background."""
    from mriganx.intensity import fill_holes
    from mriganx.synthetic import write_subjects

    shape = (181, 217, 8) if air_floor else (72, 84, 24)
    scan = write_subjects(tmp_path / "scan", 1, seed=3, shape=shape, spacing=1.0)[0]["t1"]
    air = None
    if air_floor:
        image = nib.load(scan)
        values = image.get_fdata(dtype=np.float32)
        # Air: what lies outside the head in each axial slice (dark skull inside it stays as it is).
        air = ~np.moveaxis(fill_holes(np.moveaxis(values > 0, -1, 0)), 0, -1)
        values[air] = air_floor * np.percentile(values[~air], 99.5)
        values[0, 0, 0] = 0.0  # the minimum stays 0, so the floor sits at 4 % of the normalised range
        scan = tmp_path / "floored_T1w.nii.gz"
        nib.save(nib.Nifti1Image(values, image.affine), scan)
    example = runpy.run_path(str(REPO / "docs" / "examples" / "onnx_translate.py"))
    example["translate"](onnx_export, scan, tmp_path / "onnx_t2.nii.gz", "t1-to-t2")
    result = runner.invoke(app, ["convert", str(scan), "--direction", "t1-to-t2", "-o", str(tmp_path / "convert_t2.nii.gz")])
    assert result.exit_code == 0, result.output
    ours, theirs = nib.load(tmp_path / "onnx_t2.nii.gz"), nib.load(tmp_path / "convert_t2.nii.gz")
    assert np.allclose(ours.affine, theirs.affine)
    a, b = ours.get_fdata(), theirs.get_fdata()
    background = b.min()
    both = (a > background) & (b > background)
    assert ((a > background) != (b > background)).mean() < 0.01
    assert np.abs(a - b)[both].max() <= 1e-4 * (b.max() - background)
    if air is not None:
        assert not (a > background)[air].any() and not (b > background)[air].any()


def bundle_run(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
               "--bundle_root", str(bundle), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def in_process_run(bundle: Path, capsys: pytest.CaptureFixture, **settings: Any) -> tuple[int, str, str]:
    """MONAI's bundle runner in this process (what ``python -m monai.bundle run`` calls, without the interpreter
    start): the exit code (0 when it returns), stdout and stderr."""
    from monai.bundle import run as monai_run

    capsys.readouterr()
    try:
        monai_run(config_file=str(bundle / "configs" / "inference.json"), bundle_root=str(bundle),
                  **{key: str(value) for key, value in settings.items()})
        code = 0
    except SystemExit as leaving:
        code = int(leaving.code)
    out, err = capsys.readouterr()
    return code, out, err


def errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def assert_same_outputs(ours: Path, theirs: Path, scans: Path, names: list[str]) -> None:
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir()) == sorted(names)
    for name in names:
        a, b = nib.load(ours / name), nib.load(theirs / name)
        source = nib.load(next(scans.glob(name.rsplit("_", 1)[0] + ".nii.gz")))
        assert a.shape == source.shape and np.array_equal(a.affine, b.affine)
        assert a.header.get_qform(coded=True)[1] == source.header.get_qform(coded=True)[1]
        assert a.header.get_sform(coded=True)[1] == source.header.get_sform(coded=True)[1]
        assert np.abs(a.get_fdata() - b.get_fdata()).max() <= 1e-4


@pytest.fixture()
def bundle_and_scans(smoke_model: Path, phantom_dirs: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The smoke model as a bundle, and a folder of scans as users have them: the held-out T1w (RAS, codes 1/1), an
    LPS copy (sform code 2, no qform), the held-out T2w under a name that does not say so, and a 4D series."""
    pytest.importorskip("fire")
    bundle = tmp_path / "bundle"
    result = runner.invoke(app, ["export", str(smoke_model), "-f", "monai-bundle", "-o", str(bundle)])
    assert result.exit_code == 0, result.output
    for name in ("configs/metadata.json", "configs/inference.json", "models/model.pt", "models/model.ts",
                 "docs/README.md", "LICENSE"):
        assert (bundle / name).is_file(), name
    scans = tmp_path / "scans"
    scans.mkdir()
    held = nib.load(phantom_dirs["held_t1"])
    write_nifti(scans / "a_T1w.nii.gz", held.get_fdata(), held.affine)
    nx, ny = held.shape[:2]
    reversed_xy = np.array([[-1.0, 0, 0, nx - 1], [0, -1, 0, ny - 1], [0, 0, 1, 0], [0, 0, 0, 1]])  # new index -> old
    write_nifti(scans / "b_T1w.nii.gz", held.get_fdata()[::-1, ::-1].copy(), held.affine @ reversed_xy,
                qform_code=0, sform_code=2)
    write_nifti(scans / "c_scan.nii.gz", nib.load(phantom_dirs["held_t2"]).get_fdata(), held.affine)
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 3), np.float32), np.eye(4)), scans / "d_series.nii.gz")
    return bundle, scans


def test_monai_bundle_runs_with_monais_runner_and_decides_as_convert(smoke_model: Path, bundle_and_scans: tuple[Path, Path],
                                                                      tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Issue 24, item 5: with no direction the bundle reads it from each image (the T2w goes to T1w), the 4D file is
    one line on stderr and the others are converted and listed, exit code 2, no traceback; the files equal
    ``mriganx convert``'s, with a detected direction and with a given one."""
    bundle, scans = bundle_and_scans
    out = tmp_path / "bundle-auto"
    run = bundle_run(bundle, "--input_dir", str(scans), "--output_dir", str(out))
    assert run.returncode == 2, run.stderr[-3000:]
    assert errors(run.stderr) == [f"error: {scans / 'd_series.nii.gz'}: image has shape (8, 8, 8, 3); a 2D slice or a "
                                  "3D volume is needed (4D series: split it)"]
    names = ["a_T1w_t2.nii.gz", "b_T1w_t2.nii.gz", "c_scan_t1.nii.gz"]
    # stdout: MONAI's own log of its arguments, then the files written, one a line.
    assert [line for line in run.stdout.splitlines() if ".nii" in line] == [str(out / name) for name in names]
    assert "c_scan.nii.gz: detected T2w" in run.stderr
    converted = tmp_path / "convert-auto"
    result = runner.invoke(app, ["convert", str(scans), "-m", str(smoke_model), "-o", str(converted)])
    assert result.exit_code == 2 and errors(result.stderr) == errors(run.stderr)
    assert_same_outputs(out, converted, scans, names)

    # A given direction, through the same runner in this process.
    code, stdout, stderr = in_process_run(bundle, capsys, input_dir=scans, output_dir=tmp_path / "bundle-t2",
                                          direction="t2-to-t1")
    assert code == 2 and len(errors(stderr)) == 1
    converted = tmp_path / "convert-t2"
    result = runner.invoke(app, ["convert", str(scans), "-m", str(smoke_model), "--direction", "t2-to-t1", "-o", str(converted)])
    names = ["a_T1w_t1.nii.gz", "b_T1w_t1.nii.gz", "c_scan_t1.nii.gz"]
    assert_same_outputs(tmp_path / "bundle-t2", converted, scans, names)


def test_bundle_refusals_are_one_line_and_outputs_are_kept(bundle_and_scans: tuple[Path, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """Issue 24, item 5: convert's overwrite rules and refusals, each one line with exit code 2; MONAI's command
    line hands ``--overwrite false`` over as text, which must not count as set."""
    bundle, scans = bundle_and_scans
    (scans / "d_series.nii.gz").unlink()
    out = tmp_path / "out"
    code, stdout, _ = in_process_run(bundle, capsys, input_dir=scans, output_dir=out)
    assert code == 0 and len(stdout.split()) == 3
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for overwrite in ("false", False):
        code, stdout, stderr = in_process_run(bundle, capsys, input_dir=scans, output_dir=out, overwrite=overwrite)
        assert code == 2 and stdout == "" and len(errors(stderr)) == 3
        assert all(line.endswith("exists; pass --overwrite to replace it") for line in errors(stderr))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code, _, stderr = in_process_run(bundle, capsys, input_dir=scans, output_dir=out, skip_existing="true")
    assert code == 0 and stderr.count("skipped (exists)") == 3
    code, stdout, _ = in_process_run(bundle, capsys, input_dir=scans, output_dir=out, overwrite="true")
    assert code == 0 and len(stdout.split()) == 3

    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"  # the same bundle with damaged weights
    (broken / "models").mkdir(parents=True)
    (broken / "configs").symlink_to(bundle / "configs")
    (broken / "models" / "model.pt").write_bytes(b"not weights")
    cases = [
        (bundle, {"input_dir": tmp_path / "empty"}, "holds no NIfTI, DICOM or PNG images"),
        (bundle, {"input_dir": tmp_path / "missing"}, "does not exist"),
        (bundle, {"direction": "sideways"}, "--direction must be one of auto, t1-to-t2, t2-to-t1, got 'sideways'"),
        (bundle, {"overwrite": "maybe"}, "--overwrite must be true or false"),
        (bundle, {"overwrite": "true", "skip_existing": "true"}, "--overwrite replaces existing outputs and --skip-existing keeps them"),
        (broken, {}, "not the weights of this bundle's network"),
    ]
    for where, settings, needle in cases:
        settings = {"input_dir": scans, "output_dir": tmp_path / "never", **settings}
        code, stdout, stderr = in_process_run(where, capsys, **settings)
        assert code == 2 and stdout == "", (settings, stdout)
        (line,) = errors(stderr)
        assert needle in line, (needle, line)
    assert not (tmp_path / "never").exists()


def test_bundle_metadata_and_torchscript_network(smoke_model: Path, tmp_path: Path) -> None:
    """MONAI's verify_metadata fetches the schema over the network, so the fields the model zoo requires are
    checked here, and the TorchScript network's input and output shapes."""
    bundle = export_model(smoke_model, ExportFormat.MONAI_BUNDLE, tmp_path / "bundle")[0].parents[1]
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    for key in ("schema", "version", "changelog", "monai_version", "pytorch_version", "numpy_version",
                "required_packages_version", "name", "task", "description", "authors", "copyright", "intended_use",
                "references", "license", "network_data_format"):
        assert meta.get(key), key
    assert meta["version"] in meta["changelog"]
    assert "mriganx" in meta["required_packages_version"]
    model = ModelFile.load(smoke_model)
    for side in ("inputs", "outputs"):
        (tensor,) = meta["network_data_format"][side].values()
        assert tensor["num_channels"] == model.model.channels and tensor["value_range"] == [-1, 1]
        assert {"type", "format", "modality", "spatial_shape", "dtype", "is_patch_data", "channel_def"} <= set(tensor)
    scripted = torch.jit.load(str(bundle / "models" / "model.ts"))
    x = example_input(model, batch=2, size=(32, 44))
    assert scripted(x).shape == x.shape
    assert torch.allclose(scripted(x, True), generator(model, Direction.T2_TO_T1)(x), atol=1e-6)
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    assert {"input_dir", "output_dir", "direction", "network_def", "run"} <= set(config)
    # Every file is one export --overwrite recognises as an export's (EXPORTED_FILES), so a rerun may replace it.
    assert {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} <= EXPORTED_FILES


def test_export_is_whole_or_nothing(smoke_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mriganx.export as export

    out = tmp_path / "exported"

    def broken(model: ModelFile, folder: Path) -> list[Path]:
        (folder / "t1-to-t2.ts").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(export.WRITERS, ExportFormat.TORCHSCRIPT, broken)
    result = runner.invoke(app, ["export", str(smoke_model), "-f", "torchscript", "-o", str(out)])
    assert_one_line_error(result, str(out), "No space left")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a part folder

    monkeypatch.undo()
    assert runner.invoke(app, ["export", str(smoke_model), "-f", "torchscript", "-o", str(out)]).exit_code == 0
    before = (out / "t1-to-t2.ts").read_bytes()
    assert_one_line_error(runner.invoke(app, ["export", str(smoke_model), "-f", "torchscript", "-o", str(out)]), "exists")
    assert (out / "t1-to-t2.ts").read_bytes() == before
    assert runner.invoke(app, ["export", str(smoke_model), "-f", "torchscript", "-o", str(out), "--overwrite"]).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]


def test_export_refuses_a_bad_model(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    bad = tmp_path / "run" / "model.pt"
    bad.write_bytes(b"not a model")
    assert_one_line_error(runner.invoke(app, ["export", str(bad), "-o", str(tmp_path / "out")]), str(bad))
    assert not (tmp_path / "out").exists()


def test_boundary_describes_the_preprocessing(smoke_model: Path) -> None:
    from mriganx.export import boundary

    model = ModelFile.load(smoke_model)
    edge = boundary(model)
    assert edge["input"]["height_width_multiple"] == model.data.pad_multiple == DataConfig().pad_multiple
    assert edge["input"]["upper_percentile"] == model.data.upper_percentile
    assert edge["output"]["intensity"]["t1"] == model.intensity["t1"].to_list()


def test_a_missing_extra_is_one_line(smoke_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    result = runner.invoke(app, ["export", str(smoke_model), "-f", "onnx", "-o", str(tmp_path / "out")])
    assert_one_line_error(result, "onnxscript", "mriganx[export]")
    assert not (tmp_path / "out").exists()


def test_overwrite_never_deletes_a_training_run_or_a_foreign_folder(smoke_model: Path, tmp_path: Path) -> None:
    """Issue 24, items 1 and 2: --overwrite replaces an earlier export only; a run folder, a folder of other files
    and an export the user put files into are refused in one line with nothing deleted."""
    run = smoke_model.parent
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    torchscript = ["-f", "torchscript", "--overwrite"]
    for out in (run, run / "export"):  # the run folder itself, or a folder inside it
        result = runner.invoke(app, ["export", str(smoke_model), *torchscript, "-o", str(out)])
        assert_one_line_error(result, str(out), "folder of the model it exports")
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before

    mine = tmp_path / "my_folder"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["export", str(smoke_model), *torchscript, "-o", str(mine)])
    assert_one_line_error(result, str(mine), "not an export mriganx wrote", "mriganx.json")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    bundle = tmp_path / "bundle"
    assert runner.invoke(app, ["export", str(smoke_model), *torchscript, "-o", str(bundle)]).exit_code == 0
    assert {p.relative_to(bundle).as_posix() for p in bundle.rglob("*")} <= EXPORTED_FILES
    (bundle / "input").mkdir()
    (bundle / "input" / "scan.nii.gz").write_bytes(b"a user's scan")
    result = runner.invoke(app, ["export", str(smoke_model), *torchscript, "-o", str(bundle)])
    assert_one_line_error(result, "holds input")
    assert (bundle / "input" / "scan.nii.gz").read_bytes() == b"a user's scan"
    (bundle / "input" / "scan.nii.gz").unlink()
    (bundle / "input").rmdir()
    assert runner.invoke(app, ["export", str(smoke_model), *torchscript, "-o", str(bundle)]).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "my_folder"]  # no part or old folders


def test_dot_and_dotdot_outputs_leave_nothing(smoke_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24, item 8: `export -o . --overwrite` used to fail and leave a hidden part folder. `.` that holds other
    files is refused; `.` that is an export is the current folder, which is never pulled from under the shell;
    `..` and a trailing slash name the folder they mean, with its part folder beside it."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.txt").write_text("x")
    monkeypatch.chdir(work)
    assert_one_line_error(runner.invoke(app, ["export", str(smoke_model), "-f", "torchscript", "-o", ".", "--overwrite"]),
                          "not an export mriganx wrote")
    assert sorted(p.name for p in work.iterdir()) == ["data.txt"]
    exported = work / "ts"
    assert runner.invoke(app, ["export", str(smoke_model), "-f", "torchscript", "-o", "ts/"]).exit_code == 0
    monkeypatch.chdir(exported)
    before = sorted(p.name for p in exported.iterdir())
    assert_one_line_error(runner.invoke(app, ["export", str(smoke_model), "-f", "torchscript", "-o", ".", "--overwrite"]),
                          "current folder")
    assert sorted(p.name for p in exported.iterdir()) == before
    assert_one_line_error(runner.invoke(app, ["export", str(smoke_model), "-f", "torchscript", "-o", "..", "--overwrite"]),
                          "not an export mriganx wrote")
    monkeypatch.chdir(work)
    result = runner.invoke(app, ["export", str(smoke_model), "-f", "torchscript", "-o", "ts/../ts/", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in work.iterdir()) == ["data.txt", "ts"] and sorted(p.name for p in tmp_path.iterdir()) == ["work"]
