"""The command line, end to end through Typer's CliRunner: synth -> train -> convert, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from mriganx.cli import app
from tests.helpers import SMALL_SHAPE

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "convert", "synth"):
        assert command in result.output


def test_synth_train_convert(tmp_path: Path) -> None:
    size = ",".join(map(str, SMALL_SHAPE))
    result = runner.invoke(app, ["synth", str(tmp_path / "ph"), "--subjects", "2", "--size", size, "--spacing", "4"])
    assert result.exit_code == 0, result.output
    t1 = sorted((tmp_path / "ph").glob("*_T1w.nii.gz"))
    t2 = sorted((tmp_path / "ph").glob("*_T2w.nii.gz"))
    assert len(t1) == len(t2) == 2
    (tmp_path / "t1").mkdir()
    (tmp_path / "t2").mkdir()
    t1[0].rename(tmp_path / "t1" / t1[0].name)
    t2[1].rename(tmp_path / "t2" / t2[1].name)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--t1-dir", str(tmp_path / "t1"), "--t2-dir", str(tmp_path / "t2"),
                                 "--out", str(run), "--config", "smoke", "--max-steps", "3", "--device", "cpu",
                                 "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert (run / "model.pt").is_file() and "model:" in result.output
    assert "precision: bf16" in (run / "config.yaml").read_text()
    result = runner.invoke(app, ["train", "--t1-dir", str(tmp_path / "t1"), "--t2-dir", str(tmp_path / "t2"),
                                 "--out", str(run), "--config", "smoke", "--max-steps", "5", "--resume"])
    assert result.exit_code == 0, result.output
    assert "2 steps" in result.output
    result = runner.invoke(app, ["convert", str(t1[1]), "--model", str(run / "model.pt"), "-o", str(tmp_path / "x.nii.gz")])
    assert result.exit_code == 0, result.output
    out = nib.load(tmp_path / "x.nii.gz")
    np.testing.assert_allclose(out.affine, nib.load(t1[1]).affine)


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.nii.gz"
    result = runner.invoke(app, ["convert", str(missing), "--model", str(tmp_path / "model.pt")])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "model.pt" in lines[0]
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["train", "--t1-dir", str(tmp_path / "empty"), "--t2-dir", str(tmp_path / "empty"),
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'empty'}: holds no NIfTI, DICOM or PNG images"
    assert not (tmp_path / "run").exists()
    not_a_model = tmp_path / "model.pt"
    not_a_model.write_bytes(b"\x80\x04junk")
    result = runner.invoke(app, ["convert", str(tmp_path), "--model", str(not_a_model)])
    assert result.exit_code == 2 and "not a loadable mriganx model" in result.stderr


def test_help_keeps_bracketed_defaults() -> None:
    """Help texts say where a default comes from in brackets; nothing may swallow them as markup."""
    for command in ("convert", "export", "models"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "[default: the shipped" in " ".join(result.output.split()), (command, result.output)


def test_flags_that_cannot_act_together_are_refused(tmp_path: Path) -> None:
    """--overwrite replaces what --skip-existing keeps: one of them would be ignored in silence."""
    from tests.helpers import assert_one_line_error

    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), scan)
    result = runner.invoke(app, ["convert", str(scan), "--overwrite", "--skip-existing"])
    assert_one_line_error(result, "--overwrite replaces existing outputs and --skip-existing keeps them")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]
