"""2.5D models: each slice with its neighbours as channels, from training through conversion."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from mriganx.config import Direction, load_config, override
from mriganx.convert import convert
from mriganx.data import load_slices
from mriganx.inference import Translator
from mriganx.io import load_image
from mriganx.modelfile import ModelFile
from mriganx.slices import centre, network_view, with_context
from mriganx.training import train


@pytest.fixture(scope="module")
def context_model(phantom_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = override(load_config("smoke"), {"train.max_steps": 3, "train.device": "cpu", "model.context_slices": 2})
    return train(config, phantom_dirs["t1"], phantom_dirs["t2"], tmp_path_factory.mktemp("ctx-run"), progress=False).model_path


def test_stacks_hold_neighbours_in_order_and_repeat_edges() -> None:
    slices = torch.arange(5.0)[:, None, None].expand(5, 2, 3)
    stacks = with_context(slices, 2)
    assert stacks.shape == (5, 5, 2, 3)
    assert stacks[:, :, 0, 0].tolist()[0] == [0, 0, 0, 1, 2]
    assert stacks[:, :, 0, 0].tolist()[2] == [0, 1, 2, 3, 4]
    assert stacks[:, :, 0, 0].tolist()[4] == [2, 3, 4, 4, 4]
    assert torch.equal(centre(stacks)[:, 0], slices)
    assert torch.equal(with_context(slices, 0)[:, 0], slices)
    assert with_context(slices[:1], 3).unique().tolist() == [0.0]  # one 2D slice: copies of itself


def test_slice_set_keeps_volume_neighbours(phantom_dirs: dict[str, Path]) -> None:
    config = load_config("smoke").data
    flat, stacked = load_slices(phantom_dirs["t1"], config), load_slices(phantom_dirs["t1"], config, context_slices=1)
    assert stacked.slices.shape[1] == 3 and stacked.masks.shape == stacked.slices.shape
    assert torch.equal(centre(stacked.slices), flat.slices)
    # Inside a volume, the first channel of one entry is the centre of the entry before it.
    assert torch.equal(stacked.slices[1:5, 0], stacked.slices[0:4, 1])
    assert stacked.histogram() == flat.histogram()


def test_model_translates_stacks_and_records_the_context(context_model: Path) -> None:
    model = ModelFile.load(context_model)
    assert model.model.context_slices == 2
    first = model.generators[Direction.T1_TO_T2]["model.0.conv.weight"]
    assert first.shape[1] == 5  # five slices in
    translator = Translator.load(context_model, "cpu")
    assert translator.model_config.channels == 5


@pytest.mark.parametrize("k", [0, 2])
def test_each_slice_is_the_mean_of_its_own_predictions(smoke_model: Path, context_model: Path,
                                                       phantom_dirs: dict[str, Path], k: int) -> None:
    # With an identity "generator" every prediction of a slice is the slice: any mix-up of which stack channel
    # belongs to which slice (at the volume's ends above all) would blend neighbours into the result.
    translator = Translator.load(context_model if k else smoke_model, "cpu")
    translator.generators[Direction.T1_TO_T2] = torch.nn.Identity()
    view = network_view(load_image(phantom_dirs["held_t1"]), translator.data_config)
    x, m = torch.from_numpy(view.slices)[:, None], torch.from_numpy(view.masks)[:, None]
    out = translator.translate_slices(x, m, Direction.T1_TO_T2, batch_size=3)
    assert torch.allclose(out, torch.where(m, x, torch.tensor(-1.0)), atol=1e-6)


def test_context_fast_path_matches_plain_path(context_model: Path, phantom_dirs: dict[str, Path]) -> None:
    translator = Translator.load(context_model, "cpu")
    view = network_view(load_image(phantom_dirs["held_t1"]), translator.data_config)
    x, m = torch.from_numpy(view.slices)[:, None], torch.from_numpy(view.masks)[:, None]
    plain = translator.translate_slices(x, m, Direction.T1_TO_T2, batch_size=1, skip_empty=False)
    fast = translator.translate_slices(x, m, Direction.T1_TO_T2, batch_size=16, skip_empty=True)
    assert torch.allclose(plain, fast, atol=1e-5)


def test_convert_uses_the_context_and_keeps_the_grid(context_model: Path, phantom_dirs: dict[str, Path],
                                                     tmp_path: Path) -> None:
    report = convert([phantom_dirs["held_t1"]], context_model, output=tmp_path, progress=False)
    assert not report.failed
    source, written = nib.load(phantom_dirs["held_t1"]), nib.load(report.written[0])
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    data = np.asarray(written.dataobj)
    assert np.isfinite(data).all() and data.std() > 0


def test_negative_context_is_refused() -> None:
    from mriganx.errors import MriganxError

    with pytest.raises(MriganxError, match="context_slices"):
        override(load_config("smoke"), {"model.context_slices": -1})


def test_cli_trains_a_2_5d_model(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mriganx.cli import app

    result = CliRunner().invoke(app, ["train", "--t1-dir", str(phantom_dirs["t1"]), "--t2-dir", str(phantom_dirs["t2"]),
                                      "-o", str(tmp_path / "run"), "--config", "smoke", "--max-steps", "2",
                                      "--context-slices", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert torch.load(tmp_path / "run" / "model.pt", weights_only=True)["model"]["context_slices"] == 1
    # Resuming with another context would need other networks: refused, not silently retrained.
    again = CliRunner().invoke(app, ["train", "--t1-dir", str(phantom_dirs["t1"]), "--t2-dir", str(phantom_dirs["t2"]),
                                     "-o", str(tmp_path / "run"), "--resume", "--context-slices", "2", "--max-steps", "3"])
    assert again.exit_code == 2 and "another network config" in again.output
