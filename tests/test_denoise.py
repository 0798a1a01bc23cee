"""The edge-preserving denoiser at the generator's input: noise goes, edges and clean slices stay, air is untouched."""

from __future__ import annotations

import torch

from mriganx.config import Direction, load_config, override
from mriganx.denoise import BilateralDenoise, noise_sigma
from mriganx.networks import build_generator


def _noisy_step(sigma: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    clean = torch.full((1, 1, 48, 48), -0.6)
    clean[..., 24:] = 0.4  # grey matter next to CSF, say: a step of half the range
    noise = sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    return clean, clean + noise


def test_the_noise_estimate_follows_the_noise_not_the_edges() -> None:
    for sigma in (0.01, 0.03, 0.08):
        _, noisy = _noisy_step(sigma)
        estimate = float(noise_sigma(noisy, torch.ones_like(noisy, dtype=torch.bool)))
        assert 0.7 * sigma < estimate < 1.3 * sigma


def test_noise_is_removed_inside_tissue_and_the_edge_stays_sharp() -> None:
    clean, noisy = _noisy_step(0.04)
    out = BilateralDenoise(range_factor=5.0)(noisy)
    inside = (slice(None), slice(None), slice(4, 44), slice(4, 20))
    assert (out - clean)[inside].std() < 0.5 * (noisy - clean)[inside].std()
    step = out[..., 25].mean() - out[..., 22].mean()  # one pixel each side of the edge
    assert step > 0.9 * (clean[..., 25].mean() - clean[..., 22].mean())


def test_a_clean_slice_passes_almost_unchanged_and_air_is_never_touched() -> None:
    ramp = torch.linspace(-0.8, 0.8, 40).repeat(40, 1)[None, None].clone()
    ramp[..., :5, :] = -1.0  # air above the head
    out = BilateralDenoise(range_factor=5.0)(ramp)
    assert torch.equal(out[..., :5, :], ramp[..., :5, :])
    assert (out - ramp)[..., 6:-2, 2:-2].abs().max() < 1e-3  # no noise, so (almost) nothing to smooth
    assert torch.equal(BilateralDenoise(range_factor=0.0)(ramp), ramp)


def test_each_direction_gets_its_own_denoiser_and_it_scripts_exactly() -> None:
    cfg = override(load_config("smoke"), {"model.denoise": [5.0, 0.0]})
    forward, backward = (build_generator(cfg.model, d).eval() for d in Direction)
    assert forward.denoise is not None and backward.denoise is None
    x = _noisy_step(0.05)[1].clamp(-1, 1)
    assert torch.allclose(torch.jit.script(forward)(x), forward(x), atol=1e-6)
