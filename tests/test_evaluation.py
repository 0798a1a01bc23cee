"""Evaluation: pairing, unpaired measures, MS-SSIM sizes, and evaluate end to end (the metrics: test_metrics.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mriganx.config import Direction, IntensityScale
from mriganx.evaluation import evaluate, evaluate_unpaired, pair_inputs, wasserstein_1d


def test_wasserstein_of_shifted_histograms() -> None:
    edges = np.linspace(-1, 1, 65)
    a = np.zeros(64)
    b = np.zeros(64)
    a[10], b[20] = 1, 1  # a point mass moved by 10 bins of width 2/64
    assert wasserstein_1d(a, b, edges) == pytest.approx(10 * 2 / 64)
    assert wasserstein_1d(a, a, edges) == 0


def test_pairing_by_slice_index(tmp_path: Path) -> None:
    for folder, names in (("a", ["Image #70.png", "Image #8.png", "Image #9.png"]), ("b", ["Image #8.png", "Image #70.png"])):
        (tmp_path / folder).mkdir()
        for name in names:
            from PIL import Image

            Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / folder / name)
    pairs = pair_inputs(tmp_path / "a", tmp_path / "b")
    assert [(p.name, q.name) for p, q in pairs] == [("Image #8.png", "Image #8.png"), ("Image #70.png", "Image #70.png")]


def test_evaluate_volume_end_to_end(smoke_model: Path, phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    report = evaluate(smoke_model, phantom_dirs["held_t1"], phantom_dirs["held_t2"], Direction.T1_TO_T2, out=tmp_path)
    summary = report.summary
    assert summary["intensity_scale"] == IntensityScale.ROBUST.value and summary["slices"] > 10
    assert 0 < summary["mean"]["mae"] < 1 and -1 < summary["mean"]["ssim"] < 1
    written = json.loads((tmp_path / "t1-to-t2_summary.json").read_text())
    assert written["mean"]["ssim"] == pytest.approx(summary["mean"]["ssim"])
    lines = (tmp_path / "t1-to-t2_slices.csv").read_text().splitlines()
    assert len(lines) == summary["slices"] + 1 and lines[0].startswith("pair,slice,psnr")
    assert (tmp_path / "t1-to-t2_figure.png").stat().st_size > 1000
    # The true target scored against itself through the same path would be perfect; the smoke model is not.
    assert summary["mean"]["psnr"] < 60


def test_unpaired_measures(smoke_model: Path, phantom_dirs: dict[str, Path]) -> None:
    out = evaluate_unpaired(smoke_model, phantom_dirs["held_t1"])
    assert out["images"] == 1 and 0 < out["cycle_error"] < 2 and 0 <= out["intensity_w1"] <= 2


@pytest.mark.parametrize("size", [16, 24, 36, 91, 99, 109, 160, 181, 217])
def test_ms_ssim_works_for_every_slice_size_it_accepts(size: int) -> None:
    from mriganx.evaluation import ms_ssim

    image = np.random.default_rng(size).random((size, size + 3)).astype(np.float32)
    value = ms_ssim(image, image * 0.8)
    if size < 22:  # two scales need a window (11) at half size: too small, reported as NaN, not a crash
        assert math.isnan(value)
    else:
        assert 0.5 < value < 1.0
        assert ms_ssim(image, image) == pytest.approx(1.0)
