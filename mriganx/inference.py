"""A trained model that translates images: used by ``convert``, ``evaluate`` and ``demo``.

The path of one image: slice frame -> normalise with the image's own robust range -> head mask -> pad ->
generator (slices in batches, all-background slices skipped: their output is background by construction) ->
crop -> background outside the head -> map [-1, 1] to the target contrast's training range -> back to the input's
voxel order. The output array has the input's shape, so it can be written on the input's grid. A 2.5D model sees
each slice with its neighbours and predicts every slice several times; the predictions are averaged. On request a
confidence map comes with the translation (:meth:`Translator.confidence_slices`).

Slices go through the network in batches of whole slices rather than through MONAI's ``SliceInferer``: that one
runs a sliding window on every slice, which is work a fully convolutional network on a padded slice does not need,
and it cannot skip the empty slices at the top and bottom of a head.

>>> # Translator.load("run/model.pt").translate(load_image(path), Direction.T1_TO_T2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mriganx.config import Direction
from mriganx.devices import pick_device
from mriganx.errors import MriganxError
from mriganx.intensity import IntensityRange, denormalise, pad_masks, pad_slices
from mriganx.io import Image
from mriganx.memory import retain_freed_memory
from mriganx.modelfile import ModelFile, resolve
from mriganx.networks import build_generator, masked
from mriganx.slices import network_view, with_context

MIN_SIZE = 8  # the smallest slice side the generator takes (it downsamples twice; a 7x7 reflection pad needs more)


@dataclass
class Translation:
    """A translated image on the input's grid, with what was used to make it."""

    array: np.ndarray
    direction: Direction
    input_range: IntensityRange
    output_range: IntensityRange
    mask: np.ndarray
    confidence: np.ndarray | None = None  # see Translator.confidence_slices


class Translator:
    """Both generators of a trained CycleGAN, ready for inference."""

    def __init__(self, model: ModelFile, device: str | torch.device = "auto", source: Path | None = None) -> None:
        self.model, self.source = model, source
        self.device = pick_device(device) if isinstance(device, str) else device
        retain_freed_memory()  # every batch of slices frees and re-allocates the same activations
        self.model_config, self.data_config = model.model, model.data
        self.ranges = model.intensity
        self.histograms = model.histograms
        # Called after every batch of slices with how many went through the network (a progress bar's update).
        self.on_batch: Callable[[int], object] | None = None
        self.generators: dict[Direction, torch.nn.Module] = {}
        for direction in Direction:
            net = build_generator(self.model_config, direction)
            try:
                net.load_state_dict(model.generators[direction])
            except RuntimeError as exc:
                raise MriganxError(source, f"weights do not fit the network the model file describes ({str(exc).splitlines()[0]})") from None
            self.generators[direction] = net.to(self.device).eval()

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "auto") -> Translator:
        """Load a model file (weights only, every check of :meth:`mriganx.modelfile.ModelFile.load`); without a path,
        the shipped default model (:func:`mriganx.modelfile.default_model`)."""
        path = resolve(path)
        return cls(ModelFile.load(path), device, path)

    @property
    def name(self) -> str:
        """What to call this model in messages and provenance: the card's name, else the file name."""
        return str(self.model.provenance.get("name") or (self.source.name if self.source else "model"))

    @torch.inference_mode()
    def translate_slices(self, slices: torch.Tensor, masks: torch.Tensor, direction: Direction, batch_size: int = 8,
                         skip_empty: bool = True, flip: bool = False) -> torch.Tensor:
        """Normalised slices ``(n, 1, rows, cols)`` of one volume, in slice order, and their head masks -> translated
        slices in [-1, 1].

        A model with context slices translates each slice's (2k+1)-slice stack into a stack; every slice is then the
        mean of the 2k+1 predictions made of it (one from each stack it belongs to). ``skip_empty`` leaves stacks
        without head out of the network: their output is background either way, so the result is the same
        (``tests/test_inference.py`` checks it against the plain path). ``flip`` translates the left-right mirror
        image and mirrors the result back (a test-time variant for the confidence map).
        """
        k = self.model_config.context_slices
        padded, padding = pad_slices(slices, self.data_config.pad_multiple)
        padded_mask = pad_masks(masks, self.data_config.pad_multiple)
        if not self.model_config.mask_background:
            padded_mask = torch.ones_like(padded_mask)
        stacks, stack_masks = with_context(padded[:, 0], k), with_context(padded_mask[:, 0], k)
        n = len(padded)
        total = torch.zeros(padded[:, 0].shape)
        count = torch.zeros(n)
        busy = torch.nonzero(stack_masks.flatten(1).any(dim=1)).flatten() if skip_empty else torch.arange(n)
        net = self.generators[direction]
        offsets = torch.arange(-k, k + 1)
        for start in range(0, len(busy), batch_size):
            index = busy[start : start + batch_size]
            batch = stacks[index].to(self.device)
            out = net(batch.flip(-1)).flip(-1) if flip else net(batch)
            out = masked(out, stack_masks[index].to(self.device)).float().cpu()
            # Channel j of the stack around slice i is slice i + j - k; repeated edge slices are not counted twice.
            owner = index[:, None] + offsets[None, :]
            inside = (owner >= 0) & (owner < n)
            total.index_add_(0, owner[inside], out[inside])
            count.index_add_(0, owner[inside], torch.ones(int(inside.sum())))
            if self.on_batch is not None:
                self.on_batch(len(index))
        out = torch.where(count[:, None, None] > 0, total / count.clamp(min=1)[:, None, None], torch.tensor(-1.0))
        return padding.crop(out[:, None])

    @torch.inference_mode()
    def doubt_parts(self, slices: torch.Tensor, masks: torch.Tensor, translated: torch.Tensor, direction: Direction,
                    batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """The two warning signs behind :meth:`confidence_slices`, each ``(n, 1, rows, cols)`` in fractions of the
        intensity range: the mirror spread ``|G(x) - flip(G(flip(x)))| / 2`` and the cycle error
        ``|G_back(G(x)) - x| / 2`` (both differences are in [-1, 1] units; halving gives fractions of the range)."""
        mirrored = self.translate_slices(slices, masks, direction, batch_size, flip=True)
        cycled = self.translate_slices(translated, masks, direction.reverse, batch_size)
        return (translated - mirrored).abs() / 2, (cycled - slices).abs() / 2

    def confidence_slices(self, slices: torch.Tensor, masks: torch.Tensor, translated: torch.Tensor,
                          direction: Direction, batch_size: int = 8) -> torch.Tensor:
        """Where a translation is least trustworthy: ``(n, 1, rows, cols)``, 0 outside the head, higher = less
        trustworthy, in fractions of the intensity range.

        The sum of two warning signs (:meth:`doubt_parts`): how much the translation changes when the input is
        mirrored left-right (training saw both sides, so a network that is sure of a voxel gives it the same value
        either way), and the cycle error (where the way back cannot find the input, the translation lost or invented
        something). The sum ranked the true error better than either part in every run we measured
        (docs/results.md). It ranks voxels by doubt; it does not measure how far a synthetic T2w is from a real one,
        and a confident, consistent mistake scores low.
        """
        spread, cycle = self.doubt_parts(slices, masks, translated, direction, batch_size)
        return torch.where(masks, spread + cycle, 0.0)

    def translate(self, image: Image, direction: Direction | str, batch_size: int = 8,
                  confidence: bool = False) -> Translation:
        """Translate an image; the result has the input's shape and voxel order (and so has the confidence map)."""
        direction = Direction(direction)
        if float(image.array.max()) <= float(image.array.min()):
            raise MriganxError(image.source, "image is constant; there is nothing to translate")
        view = network_view(image, self.data_config)
        if min(view.slices.shape[1:]) < MIN_SIZE:
            rows, cols = view.slices.shape[1:]
            raise MriganxError(image.source, f"axial slices are {rows}x{cols}; at least {MIN_SIZE}x{MIN_SIZE} is needed")
        x, m = torch.from_numpy(view.slices)[:, None], torch.from_numpy(view.masks)[:, None]
        out = self.translate_slices(x, m, direction, batch_size)
        target_range = self.ranges[direction.target]
        score = None
        if confidence:
            score = view.to_grid(self.confidence_slices(x, m, out, direction, batch_size)[:, 0].numpy())
        # Resampled back to the input's grid, background stays background there too, and a voxel where the input has
        # no signal at all (outside a brain-extracted scan) gets none: resampling must not paint a rim around it.
        mask = view.to_grid(view.masks, mode="nearest") & (image.array > view.range.low)
        values = np.where(mask, view.to_grid(denormalise(out[:, 0].numpy(), target_range)), np.float32(target_range.low))
        return Translation(
            array=values,
            direction=direction,
            input_range=view.range,
            output_range=target_range,
            mask=mask,
            confidence=None if score is None else np.where(mask, score, np.float32(0.0)),
        )
