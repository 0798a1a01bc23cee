"""Paired and unpaired measures of translation quality.

Paired metrics compare a translation with the true image of the target contrast on one grid, both scaled by one
fixed ``data_range`` that the report states (255 for 8-bit PNG; for volumes, the target's robust range). Each is
given over the whole image and inside a head mask:

- PSNR (dB): ``10 log10(data_range^2 / MSE)``, MONAI's ``PSNRMetric`` for the whole image; ``inf`` when identical.
- SSIM: MONAI's Gaussian SSIM (window 11, sigma 1.5, k1 0.01, k2 0.03), MONAI ``SSIMMetric``'s defaults; the masked
  value averages the SSIM map over the mask.
- MAE: mean absolute error in the stated range's units, and as a fraction of it.

>>> import numpy as np
>>> x = np.random.default_rng(0).random((32, 32)).astype(np.float32)
>>> m = paired_metrics(x, x, data_range=1.0)
>>> m["ssim"], m["mae"], m["psnr"]
(1.0, 0.0, inf)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.metrics import PSNRMetric, SSIMMetric
from monai.metrics.regression import compute_ssim_and_cs

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _as_batch(image: np.ndarray) -> torch.Tensor:
    """(rows, cols) or (x, y, z) -> MONAI's (batch, channel, spatial...) layout."""
    return torch.as_tensor(np.asarray(image, dtype=np.float32))[None, None]


def ssim_map(prediction: np.ndarray, target: np.ndarray, data_range: float) -> np.ndarray:
    """The Gaussian SSIM map (valid region: ``SSIM_WINDOW - 1`` smaller than the input along each axis)."""
    spatial = prediction.ndim
    full, _ = compute_ssim_and_cs(
        _as_batch(prediction), _as_batch(target), spatial_dims=spatial, data_range=data_range,
        kernel_type="gaussian", kernel_size=[SSIM_WINDOW] * spatial, kernel_sigma=[SSIM_SIGMA] * spatial,
    )
    return full[0, 0].numpy()


def paired_metrics(prediction: np.ndarray, target: np.ndarray, data_range: float, mask: np.ndarray | None = None) -> dict[str, float]:
    """PSNR, SSIM and MAE of ``prediction`` against ``target`` (2D or 3D), whole image and, with ``mask``, inside it."""
    if prediction.shape != target.shape:
        raise ValueError(f"shapes differ: {prediction.shape} vs {target.shape}")
    pred = np.asarray(prediction, dtype=np.float32)
    true = np.asarray(target, dtype=np.float32)
    spatial = pred.ndim
    psnr = float(PSNRMetric(max_val=data_range)(_as_batch(pred), _as_batch(true)).item())
    ssim = float(SSIMMetric(spatial_dims=spatial, data_range=data_range, win_size=SSIM_WINDOW, kernel_sigma=SSIM_SIGMA)(_as_batch(pred), _as_batch(true)).item())
    error = np.abs(pred - true)
    out = {"psnr": psnr, "ssim": ssim, "mae": float(error.mean())}
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            mse = float((error[mask] ** 2).mean())
            out["psnr_mask"] = math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)
            half = SSIM_WINDOW // 2
            inner = mask[tuple(slice(half, n - half) for n in mask.shape)]
            values = ssim_map(pred, true, data_range)
            out["ssim_mask"] = float(values[inner].mean()) if inner.any() else float("nan")
            out["mae_mask"] = float(error[mask].mean())
    return {k: (round(v, 6) if math.isfinite(v) else v) for k, v in out.items()}
