"""Real anatomy in another contrast: T2w-like volumes drawn on the anatomy of real brain-extracted T1w scans.

The project may train on several real T1w heads but on only one real T2w series (5.5 mm slices, with skull). A
T2w critic that has seen one series learns that series' look, and a T2w -> T1w generator that has seen one never
meets a brain-extracted or a 1 mm T2w. This module widens the T2w side the SynthSeg/SynthSR way (Billot et al.
2023; Iglesias et al. 2023): real anatomy, tissue intensities drawn at random, then what a scanner adds.

1. **Tissue fractions** from the T1w: a three-class Gaussian mixture of the brain's intensities gives the CSF, grey
   and white matter levels; every voxel is a linear mix of the two levels it lies between (partial volume), so a
   voxel half-way between GM and WM is half of each. Below the CSF level is CSF, above the WM level is WM.
2. **A T2w on those fractions**: tissue levels relative to white matter drawn from :data:`T2W_LEVELS` (CSF the
   brightest, then grey matter, then white matter: the order that defines a T2w), each tissue with its own smooth
   texture, so the new image is not one intensity curve of the T1w.
3. **What a scanner adds**, with MONAI's transforms: a smooth multiplicative bias field, blur across slices to a
   random slice thickness (1-6 mm, as clinical T2w series are often thick), and Rician noise at a random SNR.

Lesions are not modelled: a tumour is drawn as whatever tissue its T1w intensity resembles.

Measured (docs/results.md, "v4"): two such T2w beside the real series did not help either direction on the
development pairs, so the shipped recipe does not use them; ``scripts/ablation.py --data real+anatomy`` re-runs the
rows. Fitting a tissue prior on drawn images is a trap: they lack the dark vessels and bone of real scans, which
moves the prior's darkest-tissue knot (``--prior-from real`` fits it on the real scans instead).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> t1 = np.zeros((24, 24, 24), np.float32)
>>> t1[4:20, 4:20, 4:20] = 60.0               # grey matter
>>> t1[8:16, 8:16, 8:16] = 110.0              # white matter core
>>> t1[11:13, 11:13, 4:20] = 20.0             # a CSF channel
>>> t2 = draw_t2w(t1, t1 > 0, np.eye(4), seed=3)
>>> bool(t2[12, 12, 12] > t2[9, 9, 12] > 0) and bool(t2[5, 5, 12] > t2[9, 9, 12])  # CSF > WM, GM > WM
True
>>> float(t2[0, 0, 0])                       # no brain, no signal
0.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.transforms import GaussianSmooth, RandBiasField, RandRicianNoise
from nibabel.orientations import aff2axcodes

__all__ = ["T2W_LEVELS", "TissueLevels", "draw_t2w", "tissue_fractions", "tissue_levels"]

# T2w tissue levels relative to white matter (WM = 1), drawn uniformly from these ranges. In the one real T2w series
# the project may train on (TCGA-FG-6692, turbo spin echo) a three-class mixture of the brain puts GM at 1.24x WM
# and the brightest 5 % (CSF) above 2.6x; CSF reaches 4-5x WM in 1 mm T2w with less partial volume.
T2W_LEVELS = {"csf": (2.0, 4.5), "gm": (1.15, 1.6), "wm": (1.0, 1.0)}
SLICE_MM = (1.0, 6.0)  # slice thickness drawn uniformly (mm): blur across slices to it
SNR = (15.0, 50.0)  # white matter level over the noise sigma
BIAS = (-0.3, 0.3)  # coefficients of MONAI's degree-3 polynomial log bias field
TEXTURE = 0.04  # within-tissue variation (relative), smooth over a few mm


@dataclass(frozen=True)
class TissueLevels:
    """The T1w intensity of CSF, grey and white matter in one scan (increasing, as in every T1w)."""

    csf: float
    gm: float
    wm: float


def tissue_levels(values: np.ndarray, iterations: int = 60) -> TissueLevels:
    """The three tissue levels of a brain's T1w intensities: the means of a three-class Gaussian mixture fitted by
    expectation-maximisation, started at the 10th, 50th and 90th percentiles.

    >>> rng = np.random.default_rng(0)
    >>> v = np.concatenate([rng.normal(m, 4, n) for m, n in ((30, 2000), (70, 5000), (110, 6000))])
    >>> [round(x) for x in (lambda t: (t.csf, t.gm, t.wm))(tissue_levels(v))]
    [30, 70, 110]
    """
    v = np.asarray(values, np.float64).ravel()
    v = v[:: max(1, v.size // 200_000)]
    mean = np.percentile(v, [10, 50, 90])
    var = np.full(3, v.var() / 9 + 1e-6)
    weight = np.full(3, 1 / 3)
    for _ in range(iterations):
        log_p = np.log(weight) - 0.5 * np.log(2 * np.pi * var) - 0.5 * (v[:, None] - mean) ** 2 / var
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        p /= p.sum(axis=1, keepdims=True)
        n = p.sum(axis=0) + 1e-9
        mean = (p * v[:, None]).sum(axis=0) / n
        var = (p * (v[:, None] - mean) ** 2).sum(axis=0) / n + 1e-6
        weight = n / n.sum()
    csf, gm, wm = np.sort(mean)
    return TissueLevels(float(csf), float(gm), float(wm))


def tissue_fractions(t1w: np.ndarray, mask: np.ndarray, levels: TissueLevels) -> np.ndarray:
    """``(3, *shape)`` fractions of CSF, grey and white matter per voxel (summing to 1 in the brain, 0 outside):
    the linear partial-volume mix of the two tissue levels the voxel's T1w intensity lies between."""
    v = np.asarray(t1w, np.float32)
    gm_from_csf = np.clip((v - levels.csf) / max(levels.gm - levels.csf, 1e-6), 0.0, 1.0)
    wm_from_gm = np.clip((v - levels.gm) / max(levels.wm - levels.gm, 1e-6), 0.0, 1.0)
    below = v < levels.gm
    csf = np.where(below, 1.0 - gm_from_csf, 0.0)
    wm = np.where(below, 0.0, wm_from_gm)
    gm = 1.0 - csf - wm
    return np.stack([csf, gm, wm]).astype(np.float32) * np.asarray(mask, bool)[None]


def _smooth_field(shape: tuple[int, ...], sigma: float, generator: torch.Generator) -> torch.Tensor:
    """A random field of unit standard deviation, smooth over ``sigma`` voxels."""
    noise = torch.randn((1, *shape), generator=generator)
    field = GaussianSmooth(sigma)(noise)
    return field / field.std().clamp_min(1e-6)


def draw_t2w(t1w: np.ndarray, mask: np.ndarray, affine: np.ndarray, seed: int) -> np.ndarray:
    """A T2w-like volume on the anatomy of a brain-extracted T1w (``mask``: its brain), the same grid and voxel
    order, float32, white matter near 100 and 0 outside the brain. ``seed`` fixes every random draw."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    mask = np.asarray(mask, bool)
    fractions = tissue_fractions(t1w, mask, tissue_levels(t1w[mask]))
    levels = np.array([rng.uniform(*T2W_LEVELS[t]) for t in ("csf", "gm", "wm")], np.float32)
    texture = [1.0 + TEXTURE * _smooth_field(mask.shape, 2.0, generator)[0].numpy() for _ in levels]
    image = sum(f * level * t for f, level, t in zip(fractions, levels, texture))
    bias = RandBiasField(coeff_range=BIAS, prob=1.0)
    bias.set_random_state(seed)
    image = bias(image[None]).numpy()[0] * mask
    # Thick slices: blur along the axis closest to inferior-superior to the drawn thickness (FWHM = thickness).
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    axial = [code in "SI" for code in aff2axcodes(affine)].index(True)
    sigma = np.full(3, 0.3)
    sigma[axial] = max(rng.uniform(*SLICE_MM) / spacing[axial] / 2.355, 0.3)
    image = GaussianSmooth(sigma.tolist())(torch.from_numpy(image)[None].float()).numpy()[0]
    noise = RandRicianNoise(prob=1.0, std=float(1.0 / rng.uniform(*SNR)), relative=False, sample_std=False)
    noise.set_random_state(seed)
    image = noise(image[None]).numpy()[0] * mask
    return (100.0 * image).astype(np.float32)
