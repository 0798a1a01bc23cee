"""Paired metrics against hand computations: perfect scores, a constant shift, the mask, 3D input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mriganx.metrics import paired_metrics, ssim_map


def test_identical_images_score_perfectly() -> None:
    image = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    m = paired_metrics(image, image, 1.0, image > 0.3)
    assert m["psnr"] == math.inf and m["psnr_mask"] == math.inf
    assert m["ssim"] == pytest.approx(1.0) and m["ssim_mask"] == pytest.approx(1.0)
    assert m["mae"] == 0 and m["mae_mask"] == 0


def test_constant_shift_matches_hand_computation() -> None:
    truth = np.full((32, 32), 0.5, np.float32)
    shifted = truth + 0.1
    m = paired_metrics(shifted, truth, 1.0)
    # MSE 0.01 -> PSNR 20 dB; MAE 0.1.
    assert m["psnr"] == pytest.approx(20.0, abs=1e-4)
    assert m["mae"] == pytest.approx(0.1, abs=1e-6)
    # Flat images: the contrast-structure term is C2/C2 = 1; luminance (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * 0.6 * 0.5 + c1) / (0.6**2 + 0.5**2 + c1)
    # (MONAI's E[x^2] - E[x]^2 variance carries ~1e-7 of rounding, i.e. ~2e-4 of C2, on flat images.)
    assert m["ssim"] == pytest.approx(expected, abs=5e-4)


def test_masked_metrics_only_see_the_mask() -> None:
    truth = np.zeros((40, 40), np.float32)
    prediction = truth.copy()
    prediction[:, :20] = 0.2  # all the error sits outside the mask
    mask = np.zeros_like(truth, dtype=bool)
    mask[:, 25:] = True
    m = paired_metrics(prediction, truth, 1.0, mask)
    assert m["mae_mask"] == 0 and m["mae"] == pytest.approx(0.1)


def test_volumes_are_scored_in_3d_and_shapes_must_match() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random((16, 18, 20)).astype(np.float32)
    noisy = truth + 0.05 * rng.standard_normal(truth.shape).astype(np.float32)
    m = paired_metrics(noisy, truth, 1.0)
    assert 0 < m["ssim"] < 1 and m["psnr"] == pytest.approx(10 * math.log10(1 / 0.0025), abs=0.3)
    assert ssim_map(noisy, truth, 1.0).shape == tuple(n - 10 for n in truth.shape)  # the valid region of an 11-window
    with pytest.raises(ValueError, match="shapes differ"):
        paired_metrics(noisy, truth[:-1], 1.0)
