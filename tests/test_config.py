"""The typed config: shipped YAMLs, overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mriganx.config import Config, GeneratorKind, load_config, override, shipped_configs
from mriganx.errors import MriganxError


def test_shipped_configs_load() -> None:
    assert {"default", "cpu", "smoke"} <= set(shipped_configs())
    default = load_config("default")
    assert (default.model.ngf, default.model.n_blocks, default.train.epochs, default.train.epochs_decay) == (64, 9, 100, 100)
    assert default.model.generator is GeneratorKind.RESNET
    assert default.train.lambda_cycle == 10.0 and default.train.identity_weight == 0.5
    assert load_config("cpu").model.ngf < 64
    # cpu-volume is cpu as a 2.5D model, with the decoder and no denoiser, as the demo's documented figure was measured.
    volume, cpu = load_config("cpu-volume").to_dict(), load_config("cpu").to_dict()
    assert volume["model"].pop("context_slices") == 1 and cpu["model"].pop("context_slices") == 0
    assert (volume["model"].pop("upsample"), cpu["model"].pop("upsample")) == ("transposed", "resize")
    assert (volume["model"].pop("denoise"), cpu["model"].pop("denoise")) == ([0.0, 0.0], [5.0, 5.0])
    assert (volume["model"], volume["data"], volume["train"]) == (cpu["model"], cpu["data"], cpu["train"])


def test_roundtrip_through_yaml(tmp_path: Path) -> None:
    config = override(load_config("cpu"), {"train.batch_size": 7, "data.crop_size": [64, 96]})
    config.save(tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == config
    assert again.data.crop_size == (64, 96)


def test_bad_configs_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(MriganxError, match="no such config"):
        load_config("nonexistent")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batchsize: 3\n")
    with pytest.raises(MriganxError, match="batchsize"):
        load_config(bad)
    assert isinstance(Config.from_dict({}), Config)


@pytest.mark.parametrize("blend", ["[0.5]", "[0.5, 1.5]", "[-0.1, 0.5]"])
def test_a_prior_blend_outside_0_1_or_not_two_numbers_is_refused(tmp_path: Path, blend: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model:\n  prior: true\n  prior_blend: {blend}\n")
    with pytest.raises(MriganxError, match="prior_blend must be two numbers"):
        load_config(bad)


def test_denoise_is_two_numbers_one_per_direction() -> None:
    assert override(load_config("smoke"), {"model.denoise": [3, 0]}).model.denoise == (3, 0)
    for bad in (5, [1, 2, 3], [-1, 0]):
        with pytest.raises(MriganxError, match="denoise must be two numbers"):
            override(load_config("smoke"), {"model.denoise": bad})
