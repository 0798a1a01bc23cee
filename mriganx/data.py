"""The unpaired slice data set: every usable slice of a T1w folder and of a T2w folder, decoded, put in the slice
frame, normalised and padded once, kept in memory, and sampled as independent random (T1w, T2w) pairs.

A folder may hold NIfTI volumes or slices, PNG slices, DICOM files or series sub-folders, in any mix. Files that
are not images (notes, JSON side-cars, hidden files) are skipped with a warning; an image that cannot be read stops
the run with a one-line error naming it, because silently training on less data than asked is worse.

>>> import numpy as np, torch
>>> from mriganx.intensity import IntensityRange
>>> s = SliceSet(torch.zeros(3, 1, 8, 8), torch.ones(3, 1, 8, 8, dtype=torch.bool), [IntensityRange(0, 1)], "demo")
>>> len(s)
3
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mriganx.config import DataConfig
from mriganx.errors import MriganxError
from mriganx.intensity import IntensityRange, median_range, pad_masks, pad_slices
from mriganx.io import find_images, load_image
from mriganx.slices import centre, network_view, with_context

log = logging.getLogger(__name__)
HISTOGRAM_BINS = 64
BRAIN_DEPTH = 12  # pixels (mm at the shipped 1 mm in-plane resolution): past scalp and skull in an adult head


@dataclass
class SliceSet:
    """Normalised, padded slices ``(n, c, rows, cols)`` of one contrast with their head masks; ``c`` is 1 for 2D
    models and 2k+1 for models with k context slices (each entry is a slice in the middle of its neighbours)."""

    slices: torch.Tensor
    masks: torch.Tensor
    ranges: list[IntensityRange]
    fingerprint: str

    def __len__(self) -> int:
        return self.slices.shape[0]

    @property
    def typical_range(self) -> IntensityRange:
        return median_range(self.ranges)

    def padded_to(self, size: tuple[int, int], multiple: int) -> SliceSet:
        """The same slices padded with background to at least ``size`` (a T1w and a T2w set share one slice size, so
        the identity pass and the pictures can batch the two together)."""
        slices, _ = pad_slices(self.slices, multiple, size)
        return SliceSet(slices, pad_masks(self.masks, multiple, size), self.ranges, self.fingerprint)

    def brain_values(self, depth: int = BRAIN_DEPTH, limit: int = 1_000_000) -> torch.Tensor:
        """Normalised intensities at least ``depth`` pixels inside the head (every slice's centre channel): with or
        without skull, what lies that deep is brain, so scalp, fat and skull do not shape the tissue prior. At most
        ``limit`` values, evenly strided."""
        masks = centre(self.masks).float()
        core = -torch.nn.functional.max_pool2d(-masks, 2 * depth + 1, stride=1, padding=depth) > 0.5
        values = centre(self.slices)[core]
        if values.numel() < 1000:  # small heads or thin slices: the whole head rather than nothing
            values = centre(self.slices)[centre(self.masks)]
        return values[:: max(1, values.numel() // limit)]

    def histogram(self, bins: int = HISTOGRAM_BINS) -> list[float]:
        """Counts of normalised head intensities in ``bins`` equal bins over [-1, 1] (the reference distribution
        that unpaired evaluation compares translations with)."""
        counts = torch.histc(centre(self.slices)[centre(self.masks)], bins=bins, min=-1.0, max=1.0)
        return counts.tolist()


def load_slices(folder: str | Path, config: DataConfig, context_slices: int = 0) -> SliceSet:
    """Read every image in ``folder`` into a :class:`SliceSet` (the in-memory cache the training samples from),
    each slice with ``context_slices`` neighbours per side from its own volume (:func:`with_context`)."""
    paths = find_images(folder)
    digest = hashlib.sha256()
    groups: dict[tuple[int, int], list[torch.Tensor]] = {}
    mask_groups: dict[tuple[int, int], list[torch.Tensor]] = {}
    ranges: list[IntensityRange] = []
    for path in paths:
        view = network_view(load_image(path), config)
        slices, masks, rng = view.slices, view.masks, view.range
        # Real images get the same clean background the generators produce, so the critics cannot tell real from
        # translated by faint signal in the air.
        slices = np.where(masks, slices, np.float32(-1.0))
        keep = masks.mean(axis=(1, 2)) >= config.min_head_fraction
        if not keep.any():
            log.warning("%s: no slice shows enough head, skipped", path)
            continue
        if context_slices and slices.shape[0] == 1:
            log.warning("%s: a single slice has no neighbours; its context channels repeat it", path)
        ranges.append(rng)
        stacks = with_context(torch.from_numpy(slices), context_slices)[keep]
        mask_stacks = with_context(torch.from_numpy(masks), context_slices)[keep]
        groups.setdefault(slices.shape[1:], []).append(stacks)
        mask_groups.setdefault(slices.shape[1:], []).append(mask_stacks)
        digest.update(path.name.encode())
        digest.update(slices.tobytes())
    if not groups:
        raise MriganxError(folder, "no image in this folder shows a head (all slices are background)")
    # Slices of different sizes are padded to one common size so that they batch together.
    rows = max(shape[0] for shape in groups)
    cols = max(shape[1] for shape in groups)
    size = (rows, cols) if config.crop_size is None else (max(rows, config.crop_size[0]), max(cols, config.crop_size[1]))
    all_slices, all_masks = [], []
    for shape, parts in groups.items():
        stack, mask = torch.cat(parts), torch.cat(mask_groups[shape])
        padded, _ = pad_slices(stack, config.pad_multiple, size)
        all_slices.append(padded)
        all_masks.append(pad_masks(mask, config.pad_multiple, size))
    return SliceSet(torch.cat(all_slices), torch.cat(all_masks), ranges, digest.hexdigest()[:16])


def common_size(t1: SliceSet, t2: SliceSet, multiple: int) -> tuple[SliceSet, SliceSet]:
    """Both sets padded to one slice size."""
    size = (max(t1.slices.shape[2], t2.slices.shape[2]), max(t1.slices.shape[3], t2.slices.shape[3]))
    return t1.padded_to(size, multiple), t2.padded_to(size, multiple)


class UnpairedSampler:
    """Independent random (T1w, T2w) batches with random crops and flips, reproducible from one torch Generator
    (whose state goes into checkpoints, so a resumed run draws the same samples as an uninterrupted one)."""

    def __init__(self, t1: SliceSet, t2: SliceSet, config: DataConfig, seed: int = 0) -> None:
        self.t1, self.t2, self.config = t1, t2, config
        self.generator = torch.Generator().manual_seed(seed)

    def _draw(self, data: SliceSet, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(data), (batch_size,), generator=self.generator)
        images, masks = data.slices[index], data.masks[index]
        if self.config.crop_size is not None:
            rows, cols = self.config.crop_size
            images, masks = self._crop(images, masks, rows, cols)
        if self.config.flip:
            flip = torch.rand(batch_size, generator=self.generator) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            masks = torch.where(flip[:, None, None, None], masks.flip(-1), masks)
        if self.config.affine_prob > 0:
            images, masks = self._affine(images, masks)
        return images.contiguous(), masks.contiguous()

    def _crop(self, images: torch.Tensor, masks: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, height, width = images.shape
        tops = torch.randint(height - rows + 1, (n,), generator=self.generator)
        lefts = torch.randint(width - cols + 1, (n,), generator=self.generator)
        crops = [(images[i, :, t : t + rows, l : l + cols], masks[i, :, t : t + rows, l : l + cols])
                 for i, (t, l) in enumerate(zip(tops.tolist(), lefts.tolist()))]
        return torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops])

    def _affine(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Small rotations (up to 10 degrees) and scalings (up to 10 %), background filled with -1.
        n = images.shape[0]
        apply = torch.rand(n, generator=self.generator) < self.config.affine_prob
        angle = (torch.rand(n, generator=self.generator) * 2 - 1) * np.deg2rad(10) * apply
        scale = 1 + (torch.rand(n, generator=self.generator) * 2 - 1) * 0.1 * apply
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
        grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
        moved = torch.nn.functional.grid_sample(images + 1, grid, align_corners=False) - 1
        moved_mask = torch.nn.functional.grid_sample(masks.float(), grid, mode="nearest", align_corners=False) > 0.5
        return moved, moved_mask

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(t1, t1_mask, t2, t2_mask)`` batches of ``batch_size`` independent slices each."""
        t1, t1_mask = self._draw(self.t1, batch_size)
        t2, t2_mask = self._draw(self.t2, batch_size)
        return t1, t1_mask, t2, t2_mask
