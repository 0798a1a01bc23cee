"""Edge-preserving denoising of a generator's input: the scan's own noise is not the other contrast's.

A translation maps each voxel's intensity to the other contrast's, so whatever noise the input carries comes out in
the translation, stretched by the map, where the true other contrast has its own, unrelated noise. In flat tissue
(white matter) that copied noise is most of what separates a synthetic image from the real one. A Gaussian blur
removes it but also smears thin structures (sulcal CSF), which costs as much as it gains on sharp scans
(docs/results.md, the ablation table); a bilateral filter (Tomasi & Manduchi 1998) averages only neighbours of similar
intensity, and its range is tied to each slice's own noise (Immerkaer 1996), so a clean or heavily interpolated slice
passes through almost unchanged and a noisy one is smoothed inside tissues, not across their edges.

It has no weights and is plain element-wise arithmetic on shifted copies, so it lives inside the generator and travels
through TorchScript, ONNX and the MONAI bundle with the model.

>>> filt = BilateralDenoise(range_factor=5.0)
>>> flat = torch.full((1, 1, 16, 16), 0.2)
>>> noisy = flat + 0.05 * torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
>>> bool((filt(noisy) - flat).std() < 0.6 * (noisy - flat).std())
True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Immerkaer's mask: zero response to any locally linear image, so what remains is mostly noise.
_NOISE_MASK = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def noise_sigma(images: torch.Tensor, inside: torch.Tensor, mask: torch.Tensor = _NOISE_MASK) -> torch.Tensor:
    """Each slice's noise standard deviation, from the mean absolute response to Immerkaer's mask inside ``inside``.

    ``images`` and ``inside`` are ``(n, 1, rows, cols)``; the answer is ``(n, 1, 1, 1)``. The mask is eroded by one
    pixel, so the step from tissue to background is not counted as noise.
    """
    response = F.conv2d(images, mask.to(images)[None, None], padding=1).abs()
    core = -F.max_pool2d(-inside.to(images.dtype), 3, 1, 1)
    mean = (response * core).sum(dim=(-2, -1), keepdim=True) / core.sum(dim=(-2, -1), keepdim=True).clamp_min(1.0)
    # Edges answer the mask too; a second pass without the responses above twice the first mean keeps anatomy
    # detail from passing for noise (a sharp, clean slice must not be smoothed).
    core = core * (response < 2.0 * mean).to(images.dtype)
    mean = (response * core).sum(dim=(-2, -1), keepdim=True) / core.sum(dim=(-2, -1), keepdim=True).clamp_min(1.0)
    return mean * (math.sqrt(math.pi / 2.0) / 6.0)


class BilateralDenoise(torch.nn.Module):
    """A bilateral filter over a ``(2 * radius + 1)``-square window, range ``range_factor`` times the slice's noise.

    Works on ``(n, channels, rows, cols)`` images in [-1, 1], each channel of each image on its own; background
    (-1, what :func:`mriganx.networks.masked` leaves outside the head) is left as it is and never averaged in.
    ``range_factor = 0`` is the identity.
    """

    def __init__(self, range_factor: float = 5.0, spatial_sigma: float = 1.5, radius: int = 2) -> None:
        super().__init__()
        self.range_factor = float(range_factor)
        self.radius = int(radius)
        # Half the window: the weight between p and p + d is the weight between p + d and p, so each exponential
        # computed for an offset d serves -d too (and the centre's weight is 1).
        self.offsets = [(dy, dx) for dy in range(0, radius + 1) for dx in range(-radius, radius + 1) if dy > 0 or dx > 0]
        self.log_spatial = [-(dy * dy + dx * dx) / (2.0 * spatial_sigma**2) for dy, dx in self.offsets]
        # Not in the state dict: a constant of the method, not a weight of a model.
        self.register_buffer("noise_mask", _NOISE_MASK.clone(), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.range_factor <= 0.0:
            return images
        n, c, rows, cols = images.shape
        flat = images.reshape(n * c, 1, rows, cols)
        inside = flat > -0.999
        sigma = (self.range_factor * noise_sigma(flat, inside, self.noise_mask)).clamp_min(1e-6)
        scale = -0.5 / (sigma * sigma)
        r = self.radius
        # Background neighbours are moved far out of range, so their weight is exactly zero without a mask per offset.
        padded = F.pad(torch.where(inside, flat, torch.full_like(flat, 1e3)), [r, r, r, r], mode="replicate")
        weighted = flat.clone()
        weights = torch.ones_like(flat)
        for (dy, dx), log_spatial in zip(self.offsets, self.log_spatial):
            # q and q + d over every padded position where both exist; a pixel p of the slice sits at p + r.
            left = max(0, -dx)
            here = padded[:, :, 0:rows + 2 * r - dy, left:cols + 2 * r - max(0, dx)]
            there = padded[:, :, dy:rows + 2 * r, left + dx:cols + 2 * r - max(0, dx) + dx]
            w = torch.exp(scale * (there - here) ** 2 + log_spatial)
            c0, c1 = r - left, r - dx - left  # where the slice's pixels sit for +d, and for -d
            w_plus, w_minus = w[:, :, r:r + rows, c0:c0 + cols], w[:, :, r - dy:r - dy + rows, c1:c1 + cols]
            weighted = (weighted + w_plus * there[:, :, r:r + rows, c0:c0 + cols]
                        + w_minus * here[:, :, r - dy:r - dy + rows, c1:c1 + cols])
            weights = weights + w_plus + w_minus
        smoothed = weighted / weights.clamp_min(1e-12)
        return torch.where(inside, smoothed, flat).reshape(n, c, rows, cols)
