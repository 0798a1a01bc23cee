"""The model file: a round trip keeps everything, and every kind of damage is refused in one line naming the file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from mriganx.config import Direction, Upsampling, load_config
from mriganx.errors import MriganxError
from mriganx.intensity import IntensityRange
from mriganx.modelfile import FORMAT, VERSION, ModelFile
from mriganx.networks import build_generator


@pytest.fixture()
def model() -> ModelFile:
    cfg = load_config("smoke")
    torch.manual_seed(0)
    return ModelFile(
        model=cfg.model,
        data=cfg.data,
        intensity={"t1": IntensityRange(0.0, 812.5), "t2": IntensityRange(3.0, 1000.0)},
        generators={d: build_generator(cfg.model, d).state_dict() for d in Direction},
        histograms={"t1": [1.0, 2.0], "t2": [3.0, 4.0]},
        fingerprints={"t1": "aaaa", "t2": "bbbb"},
        steps=42,
        provenance={"training_data": ["phantoms"], "commit": "abc123"},
    )


def test_round_trip_keeps_every_field(model: ModelFile, tmp_path: Path) -> None:
    again = ModelFile.load(model.save(tmp_path / "model.pt"))
    assert again.model == model.model and again.data == model.data
    assert again.intensity == model.intensity and again.histograms == model.histograms
    assert again.fingerprints == model.fingerprints and again.steps == 42 and again.format_version == VERSION
    assert again.provenance == model.provenance
    assert again.weights_sha256() == model.weights_sha256()
    for direction in Direction:
        for name, tensor in model.generators[direction].items():
            assert torch.equal(again.generators[direction][name], tensor)


def test_the_file_loads_weights_only_without_mriganx_classes(model: ModelFile, tmp_path: Path) -> None:
    payload = torch.load(model.save(tmp_path / "m.pt"), weights_only=True)
    assert payload["format"] == FORMAT and payload["frame"] == "SPL" and set(payload["generators"]) == {d.value for d in Direction}


def test_a_version_1_file_still_loads(model: ModelFile, tmp_path: Path) -> None:
    payload = model.to_dict()
    payload["format_version"] = 1
    del payload["provenance"]  # version 1 had no provenance
    torch.save(payload, tmp_path / "v1.pt")
    old = ModelFile.load(tmp_path / "v1.pt")
    assert old.format_version == 1 and old.provenance == {} and old.weights_sha256() == model.weights_sha256()


def _damaged(model: ModelFile, change: str) -> dict[str, Any]:
    payload = model.to_dict()
    if change == "wrong frame":
        payload["frame"] = "RAS"
    elif change == "newer version":
        payload["format_version"] = VERSION + 1
    elif change == "missing key":
        del payload["intensity"]
    elif change == "huge width":
        payload["model"]["ngf"] = 10**7
    elif change == "unknown generator":
        payload["model"]["generator"] = "unet-9000"
    elif change == "pad multiple 0":
        payload["data"]["pad_multiple"] = 0
    elif change == "NaN range":
        payload["intensity"]["t2"] = [0.0, float("nan")]
    elif change == "NaN weights":
        name = next(iter(payload["generators"]["t1-to-t2"]))
        payload["generators"]["t1-to-t2"][name] = torch.full_like(payload["generators"]["t1-to-t2"][name], float("nan"))
    elif change == "edited weights":
        payload["provenance"]["weights_sha256"] = model.weights_sha256()
        name = next(iter(payload["generators"]["t2-to-t1"]))
        payload["generators"]["t2-to-t1"][name] = payload["generators"]["t2-to-t1"][name] + 1
    return payload


@pytest.mark.parametrize("change,message", [
    ("wrong frame", "slice frame"), ("newer version", "upgrade mriganx"), ("missing key", "lacks intensity"),
    ("huge width", "ngf must be"), ("unknown generator", "unknown value"), ("pad multiple 0", "pad_multiple must be"),
    ("NaN range", "not finite"), ("NaN weights", "NaN or Inf"), ("edited weights", "sha256"),
])
def test_damage_is_refused_in_one_line(model: ModelFile, tmp_path: Path, change: str, message: str) -> None:
    path = tmp_path / "bad.pt"
    torch.save(_damaged(model, change), path)
    with pytest.raises(MriganxError, match=message) as caught:
        ModelFile.load(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_a_truncated_file_is_refused(model: ModelFile, tmp_path: Path) -> None:
    whole = model.save(tmp_path / "whole.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(MriganxError, match="not a loadable mriganx model") as caught:
        ModelFile.load(tmp_path / "cut.pt")
    assert "\n" not in str(caught.value)


def test_save_is_atomic_and_leaves_no_part_files(model: ModelFile, tmp_path: Path) -> None:
    model.save(tmp_path / "model.pt")
    model.save(tmp_path / "model.pt")  # a rerun of training replaces its model
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def _parent(model: ModelFile) -> ModelFile:
    return ModelFile(model.model, model.data, model.intensity, model.generators, steps=1800, provenance={
        "name": "parent-v1", "version": "1.0", "licence": "research use only (cite the parent)",
        "terms": "no clinical use", "training_data": {"what": "twelve phantoms", "seed": 3}, "card": "# Parent\n\nIntended use: tests.",
    })


def test_a_fine_tuned_model_carries_its_parents_card(model: ModelFile, tmp_path: Path) -> None:
    parent = _parent(model)
    model.provenance = {"training_data": "T1w: 4 slices from the folder 'mine' (unpaired)"}
    model.lineage = parent.fine_tuning_lineage("parent.pt", tmp_path / "parent.pt")
    child = ModelFile.load(model.save(tmp_path / "child.pt"))
    assert child.lineage == model.lineage and child.lineage[0]["weights_sha256"] == parent.weights_sha256()
    assert child.licence().startswith("research use only (cite the parent) [inherited: fine-tuned from parent-v1")
    assert child.terms() == "no clinical use" and child.name("child.pt") == "child.pt (fine-tuned from parent-v1)"
    assert child.training_data() == "T1w: 4 slices from the folder 'mine' (unpaired); before that, as parent-v1: twelve phantoms"
    card = child.card(tmp_path / "child.pt")
    for needed in ("licence: research use only", "terms: no clinical use", "starting from parent-v1",
                   "## Fine-tuned from parent-v1", "version: 1.0", "training data: twelve phantoms", "steps: 1800",
                   "Intended use: tests.", "folder 'mine'"):
        assert needed in card, needed
    assert "not recorded" not in card
    # A grandchild keeps the whole line; its nearest parent's licence already says where it came from.
    grandchild = ModelFile(model.model, model.data, model.intensity, model.generators,
                           lineage=child.fine_tuning_lineage("child.pt", tmp_path / "child.pt"))
    assert [p["name"] for p in grandchild.lineage] == ["child.pt (fine-tuned from parent-v1)", "parent-v1"]
    assert "research use only" in grandchild.licence() and grandchild.terms() == "no clinical use"
    # A licence of its own wins over the inherited one.
    child.provenance["licence"] = "CC-BY-4.0"
    assert child.licence() == "CC-BY-4.0"


def test_a_version_2_file_loads_without_lineage_and_a_bad_lineage_is_refused(model: ModelFile, tmp_path: Path) -> None:
    payload = model.to_dict()
    payload["format_version"] = 2
    del payload["lineage"]
    torch.save(payload, tmp_path / "v2.pt")
    old = ModelFile.load(tmp_path / "v2.pt")
    assert old.format_version == 2 and old.lineage == [] and old.licence() is None
    assert "licence: not recorded in the model file" in old.card()
    payload = model.to_dict()
    payload["lineage"] = [{"licence": "x"}]  # no name
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(MriganxError, match="lineage .* is malformed") as caught:
        ModelFile.load(tmp_path / "bad.pt")
    assert str(tmp_path / "bad.pt") in str(caught.value)


def test_a_file_from_before_the_decoder_choice_loads_with_transposed_convolutions(tmp_path: Path) -> None:
    cfg = load_config("smoke")
    old_model = dataclasses.replace(cfg.model, upsample=Upsampling.TRANSPOSED)
    weights = {d: build_generator(old_model, d).state_dict() for d in Direction}
    payload = ModelFile(old_model, cfg.data, {"t1": IntensityRange(0, 1), "t2": IntensityRange(0, 1)}, weights).to_dict()
    del payload["model"]["upsample"]  # files written before the setting existed lack the key
    torch.save(payload, tmp_path / "old.pt")
    old = ModelFile.load(tmp_path / "old.pt")
    assert old.model.upsample is Upsampling.TRANSPOSED
    build_generator(old.model, Direction.T1_TO_T2).load_state_dict(old.generators[Direction.T1_TO_T2])  # strict: every weight fits
    assert cfg.model.upsample is Upsampling.RESIZE  # what a config without the key trains


def test_a_file_with_one_prior_blur_for_both_directions_loads_it_for_each(tmp_path: Path) -> None:
    cfg = load_config("smoke")
    old_model = dataclasses.replace(cfg.model, prior_smooth=(0.7, 0.7))
    weights = {d: build_generator(old_model, d).state_dict() for d in Direction}
    payload = ModelFile(old_model, cfg.data, {"t1": IntensityRange(0, 1), "t2": IntensityRange(0, 1)}, weights).to_dict()
    payload["model"]["prior_smooth"] = 0.7  # files before v4 held one number
    torch.save(payload, tmp_path / "old.pt")
    old = ModelFile.load(tmp_path / "old.pt")
    assert old.model.prior_smooth == (0.7, 0.7)
    for direction in Direction:
        build_generator(old.model, direction).load_state_dict(old.generators[direction])  # the blur kernels fit


def test_the_prior_blur_is_set_per_direction() -> None:
    model = dataclasses.replace(load_config("smoke").model, prior_smooth=(0.0, 1.0))
    kernels = {d: build_generator(model, d).prior.kernel.shape[-1] for d in Direction}
    assert kernels == {Direction.T1_TO_T2: 1, Direction.T2_TO_T1: 7}
