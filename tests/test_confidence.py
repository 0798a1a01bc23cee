"""The confidence map (where a translation is least trustworthy) and the measures that judge it and 2.5D models."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

from mriganx.cli import app
from mriganx.config import Direction
from mriganx.slices import network_view
from mriganx.evaluation import (
    average_ranks,
    confidence_ranking,
    evaluate,
    spearman,
    through_plane_error,
)
from mriganx.inference import Translator
from mriganx.io import load_image


class Ramp(torch.nn.Module):
    """Adds a left-to-right ramp: a "generator" that gives different answers for an image and its mirror."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.linspace(-0.5, 0.5, x.shape[-1])


def held_slices(translator: Translator, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    view = network_view(load_image(path), translator.data_config)
    return torch.from_numpy(view.slices)[:, None], torch.from_numpy(view.masks)[:, None]


def test_a_consistent_model_gets_full_confidence(smoke_model: Path, phantom_dirs: dict[str, Path]) -> None:
    translator = Translator.load(smoke_model, "cpu")
    for direction in Direction:
        translator.generators[direction] = torch.nn.Identity()  # mirror-equivariant and exactly invertible
    x, m = held_slices(translator, phantom_dirs["held_t1"])
    out = translator.translate_slices(x, m, Direction.T1_TO_T2)
    score = translator.confidence_slices(x, m, out, Direction.T1_TO_T2)
    assert score.shape == x.shape and float(score.abs().max()) < 1e-6


def test_mirror_disagreement_raises_doubt_inside_the_head_only(smoke_model: Path, phantom_dirs: dict[str, Path]) -> None:
    translator = Translator.load(smoke_model, "cpu")
    translator.generators[Direction.T1_TO_T2] = Ramp()
    translator.generators[Direction.T2_TO_T1] = torch.nn.Identity()
    x, m = held_slices(translator, phantom_dirs["held_t1"])
    out = translator.translate_slices(x, m, Direction.T1_TO_T2)
    score = translator.confidence_slices(x, m, out, Direction.T1_TO_T2)
    assert (score[~m] == 0).all()
    assert float(score[m].mean()) > 0.05
    # The ramp's mirror disagreement is largest at the left and right edges of the head, least in the middle.
    columns = score[:, 0].sum(dim=(0, 1)) / m[:, 0].sum(dim=(0, 1)).clamp(min=1)
    inside = torch.nonzero(m[:, 0].any(dim=1).any(dim=0)).flatten()
    middle = columns[inside[len(inside) // 2]]
    assert columns[inside[0]] > middle and columns[inside[-1]] > middle


def test_convert_writes_the_map_on_the_input_grid(smoke_model: Path, phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["convert", str(phantom_dirs["held_t1"]), "-m", str(smoke_model), "-o", str(tmp_path),
                                      "--confidence"])
    assert result.exit_code == 0, result.output
    maps = list(tmp_path.glob("*_t2_confidence.nii.gz"))
    assert len(maps) == 1 and len(list(tmp_path.glob("*_t2.nii.gz"))) == 1
    source, written = nib.load(phantom_dirs["held_t1"]), nib.load(maps[0])
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    assert written.header["sform_code"] == source.header["sform_code"]
    values = np.asarray(written.dataobj)
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() > 0
    # A second run must not replace either file silently, and must write nothing.
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    again = CliRunner().invoke(app, ["convert", str(phantom_dirs["held_t1"]), "-m", str(smoke_model), "-o", str(tmp_path),
                                     "--confidence"])
    assert again.exit_code == 2 and "exists" in again.output
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_spearman_uses_ranks_with_ties_averaged() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert spearman(x, -x**3) == pytest.approx(-1.0)
    assert average_ranks(np.array([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]
    # Hand-computed: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4) give r = 4.5 / sqrt(4.5 * 5).
    assert spearman(np.array([1.0, 2.0, 2.0, 3.0]), x[:4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert math.isnan(spearman(np.ones(4), x[:4]))


def test_ranking_separates_trusted_from_doubtful_voxels() -> None:
    rng = np.random.default_rng(0)
    error = rng.random(10_000)
    informative = confidence_ranking(error + 0.1 * rng.random(10_000), error)
    blind = confidence_ranking(rng.random(10_000), error)
    assert informative["spearman"] > 0.9 and abs(blind["spearman"]) < 0.05
    assert informative["mae_least_confident"] > 0.9 and informative["mae_most_confident"] < 0.1
    assert blind["mae_least_confident"] == pytest.approx(0.5, abs=0.05)


def test_through_plane_error_sees_flicker_not_offsets() -> None:
    target = np.random.default_rng(1).random((6, 8, 8)).astype(np.float32)
    masks = np.ones_like(target, dtype=bool)
    assert through_plane_error(target, target, masks) == 0.0
    assert through_plane_error(target + 0.2, target, masks) == pytest.approx(0.0, abs=1e-6)  # same offset everywhere
    flicker = target + 0.1 * (-1.0) ** np.arange(6)[:, None, None]  # +0.1, -0.1, ... slice by slice
    assert through_plane_error(flicker, target, masks) == pytest.approx(0.2, abs=1e-6)
    assert math.isnan(through_plane_error(target[:1], target[:1], masks[:1]))


def test_evaluate_reports_consistency_and_confidence(smoke_model: Path, phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    report = evaluate(smoke_model, phantom_dirs["held_t1"], phantom_dirs["held_t2"], Direction.T1_TO_T2,
                      out=tmp_path, confidence=True)
    summary = report.summary
    assert summary["mean"]["through_plane_error"] > 0
    assert len(summary["volumes"]) == 1
    c = summary["confidence"]
    assert -1 <= c["spearman"] <= 1 and c["voxels"] > 1000
    assert c["mae_most_confident"] >= 0 and c["mae_least_confident"] >= 0
    assert '"confidence"' in (tmp_path / "t1-to-t2_summary.json").read_text()
    # The figure gains a column showing the map beside the true error.
    plain = evaluate(smoke_model, phantom_dirs["held_t1"], phantom_dirs["held_t2"], Direction.T1_TO_T2, out=tmp_path / "plain")
    assert plain.confidence is None and "confidence" not in plain.summary
    with PILImage.open(report.figure) as doubt, PILImage.open(plain.figure) as without:
        assert doubt.width > without.width * 1.15 and doubt.height == without.height
