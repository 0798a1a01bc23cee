"""The shipped default model: present, loads like any model, used when no --model is given, with the direction read
from the image; fine-tuning starts from its weights; it ships inside a built wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mriganx.cli import app
from mriganx.config import load_config, override
from mriganx.modelfile import ModelFile, default_model
from mriganx.synthetic import make_phantom
from mriganx.training import Trainer
from tests.helpers import write_nifti

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
# A whole head at 2 mm: big enough for the detection's anatomy, small enough for a fast test.
GRID, SPACING = (91, 109, 91), 2.0


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("head")
    ph = make_phantom(seed=21, shape=GRID, spacing=SPACING, noise=0.01)
    return {"t1": write_nifti(folder / "scan.nii.gz", ph.t1, ph.affine),
            "t2": write_nifti(folder / "other_T2w.nii.gz", ph.t2, ph.affine)}


def test_the_default_model_ships_with_a_card_and_a_matching_digest() -> None:
    path = default_model()
    model = ModelFile.load(path)  # every check, weights only
    assert path.stat().st_size < 25e6
    card = model.card()
    for needed in ("Intended use", "not for diagnosis", "Apache-2.0", "python scripts/train_default_model.py"):
        assert needed.lower() in card.lower(), needed
    assert model.provenance["weights_sha256"] == model.weights_sha256()
    assert model.data.in_plane_mm == 1.0 and model.model.context_slices == 0  # takes single slices too


def test_models_command_prints_the_card() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "sha256" in result.output.lower() and "intended use" in result.output.lower()


def test_shipped_models_are_listed_and_named() -> None:
    from mriganx.modelfile import resolve, shipped_models, shipped_path

    names = shipped_models()
    assert names[0] == "default"
    assert sum(shipped_path(name).stat().st_size for name in names) <= 25e6  # all model files together
    assert all(resolve(name) == shipped_path(name) for name in names)
    assert resolve("no-such-model") == Path("no-such-model")  # anything else is a path
    result = runner.invoke(app, ["models", "--list"])
    assert result.exit_code == 0, result.output
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == names
    assert "Apache-2.0" in result.stdout


def test_convert_with_nothing_but_the_scan(head: dict[str, Path], tmp_path: Path) -> None:
    scan = Path(tmp_path / "scan.nii.gz")
    scan.write_bytes(head["t1"].read_bytes())
    result = runner.invoke(app, ["convert", str(scan)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "scan_t2.nii.gz"
    assert out.is_file() and str(out) in result.stdout
    assert "shipped default" in result.stderr and "detected T1w" in result.stderr
    before, after = nib.load(scan), nib.load(out)
    assert after.shape == before.shape
    np.testing.assert_allclose(after.affine, before.affine)
    assert np.isfinite(after.get_fdata()).all() and after.get_fdata().max() > 0


def test_a_t2w_goes_the_other_way(head: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["convert", str(head["t2"]), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "other_T2w_t1.nii.gz").is_file() and "detected T2w" in result.stderr


def _flair(tmp_path: Path) -> Path:
    from mriganx.synthetic import TISSUE_PARAMETERS, Tissue

    ph = make_phantom(seed=22, shape=GRID, spacing=SPACING)
    # Inversion recovery that nulls CSF, long TE: dark CSF like a T1w, but grey matter brighter than white.
    ti, tr, te = 2500.0, 9000.0, 120.0
    signal = {t: p.pd * abs(1 - 2 * np.exp(-ti / p.t1) + np.exp(-tr / p.t1)) * np.exp(-te / p.t2)
              for t, p in TISSUE_PARAMETERS.items()}
    volume = np.vectorize(lambda label: signal[Tissue(label)])(ph.labels).astype(np.float32) * 1000
    return write_nifti(tmp_path / "flair.nii.gz", volume, ph.affine)


def _noise(tmp_path: Path) -> Path:
    data = np.random.default_rng(0).random(GRID).astype(np.float32)
    return write_nifti(tmp_path / "noise.nii.gz", data, np.diag([SPACING] * 3 + [1.0]))


@pytest.mark.parametrize("make", [_flair, _noise], ids=["FLAIR-like", "noise"])
def test_neither_t1w_nor_t2w_is_refused_and_nothing_written(make, tmp_path: Path) -> None:
    source = make(tmp_path)
    result = runner.invoke(app, ["convert", str(source), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and source.name in errors[0] and "--direction" in errors[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_init_starts_from_the_given_weights(phantom_dirs: dict[str, Path], smoke_model: Path, tmp_path: Path) -> None:
    # Weights no initialisation could produce: the smoke model's, shifted.
    start = ModelFile.load(smoke_model)
    start.generators = {d: {k: v + 0.5 if v.is_floating_point() else v for k, v in w.items()}
                        for d, w in start.generators.items()}
    shifted = start.save(tmp_path / "shifted.pt")
    config = override(load_config("smoke"), {"train.init": str(shifted), "train.max_steps": 0, "train.device": "cpu"})
    result = Trainer(config, phantom_dirs["t1"], phantom_dirs["t2"], tmp_path / "run", progress=False).run()
    again = ModelFile.load(result.model_path)
    assert result.steps == 0 and again.weights_sha256() == start.weights_sha256()
    plain = override(load_config("smoke"), {"train.max_steps": 0, "train.device": "cpu"})
    fresh = Trainer(plain, phantom_dirs["t1"], phantom_dirs["t2"], tmp_path / "r2", progress=False).run()
    assert ModelFile.load(fresh.model_path).weights_sha256() != start.weights_sha256()


def test_init_refuses_a_model_of_another_network(phantom_dirs: dict[str, Path], smoke_model: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--t1-dir", str(phantom_dirs["t1"]), "--t2-dir", str(phantom_dirs["t2"]),
                                 "--out", str(tmp_path / "run"), "--config", "cpu", "--init", str(smoke_model)])
    assert result.exit_code == 2 and "other network settings" in result.stderr


@pytest.mark.slow
def test_the_model_is_inside_a_built_wheel(tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(tmp_path.glob("mriganx-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "mriganx/models/default.pt" in names and "mriganx/configs/shipped.yaml" in names
        assert archive.read("mriganx/models/default.pt") == default_model().read_bytes()


def test_a_model_fine_tuned_from_the_default_carries_its_card_into_models_and_exports(phantom_dirs: dict[str, Path],
                                                                                        tmp_path: Path) -> None:
    import json

    import torch

    shipped = ModelFile.load(default_model())
    licence, name = shipped.provenance["licence"], shipped.provenance["name"]
    run = tmp_path / "tuned"
    result = runner.invoke(app, ["train", "--t1-dir", str(phantom_dirs["t1"]), "--t2-dir", str(phantom_dirs["t2"]),
                                 "--out", str(run), "--init", "default", "--max-steps", "1", "--batch-size", "1",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    card = runner.invoke(app, ["models", str(run / "model.pt")]).stdout
    for needed in (f"licence: {licence} [inherited: fine-tuned from {name}", f"## Fine-tuned from {name}",
                   f"weights sha256: {shipped.weights_sha256()}", "slices from the folder 't1'", "trained 1 steps"):
        assert needed in card, needed
    assert shipped.provenance["card"].splitlines()[2] in card  # the parent's own card text, carried forward
    assert "not recorded" not in card

    bundle = tmp_path / "bundle"
    assert runner.invoke(app, ["export", str(run / "model.pt"), "-o", str(bundle)]).exit_code == 0
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["license"].startswith(licence) and name in meta["name"] and name in meta["data_source"]
    assert f"fine-tuned from {name}" in (bundle / "LICENSE").read_text() and licence in (bundle / "LICENSE").read_text()
    assert f"## Fine-tuned from {name}" in (bundle / "docs" / "README.md").read_text()
    edge = json.loads((bundle / "mriganx.json").read_text())["model"]
    assert edge["licence"].startswith(licence)
    assert edge["fine_tuned_from"][0]["weights_sha256"] == shipped.weights_sha256()
    # TorchScript carries the same boundary inside each file (ONNX in its metadata_props, from the same function).
    assert runner.invoke(app, ["export", str(run / "model.pt"), "-f", "torchscript", "-o", str(tmp_path / "ts")]).exit_code == 0
    extra = {"mriganx.json": ""}
    torch.jit.load(str(tmp_path / "ts" / "t1-to-t2.ts"), _extra_files=extra)
    assert json.loads(extra["mriganx.json"])["model"] == edge


def test_a_resumed_fine_tuning_run_keeps_its_parents_card(phantom_dirs: dict[str, Path], smoke_model: Path,
                                                          tmp_path: Path) -> None:
    parent = ModelFile.load(smoke_model)
    parent.provenance = {"name": "tiny-parent", "licence": "research use only", "terms": "cite us"}
    parent_path = parent.save(tmp_path / "parent.pt")
    config = override(load_config("smoke"), {"train.init": str(parent_path), "train.max_steps": 1, "train.device": "cpu"})
    Trainer(config, phantom_dirs["t1"], phantom_dirs["t2"], tmp_path / "run", progress=False).run()
    resumed = override(config, {"train.max_steps": 2})
    result = Trainer(resumed, phantom_dirs["t1"], phantom_dirs["t2"], tmp_path / "run", resume=True, progress=False).run()
    tuned = ModelFile.load(result.model_path)
    assert tuned.steps == 2 and [p["name"] for p in tuned.lineage] == ["tiny-parent"]
    assert tuned.lineage[0]["init"] == str(parent_path) and tuned.terms() == "cite us"
    assert tuned.licence().startswith("research use only [inherited: fine-tuned from tiny-parent")
