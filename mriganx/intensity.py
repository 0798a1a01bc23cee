"""Intensity normalisation, the head mask and padding: what happens to slice values between the file and the network.

Normalisation maps each image robustly to [-1, 1]: the ``lower_percentile`` of all voxels (0 = the minimum, the
background of an MRI) goes to -1 and the ``upper_percentile`` of the voxels above it (the head, so that the field of
view does not matter) goes to 1; values beyond are clipped. The two input intensities are kept in an
:class:`IntensityRange` so that a network output in [-1, 1] can be mapped back: a translation is written in the
*target contrast's training range* (the median of the ranges of the training images of that contrast), documented
in ``model.pt`` and in ``docs/``.

The head mask marks voxels that carry signal: above a threshold, with holes filled slice by slice (dark skull inside
bright scalp is head) and specks smaller than ``min_area`` voxels dropped (noise in the air). The threshold is 1 % of
the range, or twice the scan's own air level where that air lies at 1-10 % (:func:`air_threshold`): a template, or
a scan whose air carries a floor, would otherwise be head from edge to edge and its air translated as tissue.

>>> import numpy as np
>>> x = np.array([[0.0, 50.0], [100.0, 200.0]])
>>> r = fit_range(x, 0.0, 100.0)
>>> (r.low, r.high)
(0.0, 200.0)
>>> normalise(x, r).tolist()
[[-1.0, -0.5], [0.0, 1.0]]
>>> denormalise(normalise(x, r), r).tolist()
[[0.0, 50.0], [100.0, 200.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRange, SpatialPad


@dataclass(frozen=True)
class IntensityRange:
    """Input intensities that map to -1 (``low``) and 1 (``high``)."""

    low: float
    high: float

    def to_list(self) -> list[float]:
        return [self.low, self.high]


def fit_range(array: np.ndarray, lower_percentile: float = 0.0, upper_percentile: float = 99.5) -> IntensityRange:
    """Robust range of an image (see the module docstring)."""
    low = float(np.percentile(array, lower_percentile))
    above = array[array > low]
    high = float(np.percentile(above, upper_percentile)) if above.size else low
    if high <= low:
        high = low + 1.0  # a constant image: keep the mapping defined; callers that need contrast check it
    return IntensityRange(low, high)


def median_range(ranges: list[IntensityRange]) -> IntensityRange:
    """The typical range of a set of images (the documented output range of a translation into that contrast)."""
    return IntensityRange(float(np.median([r.low for r in ranges])), float(np.median([r.high for r in ranges])))


def normalise(array: np.ndarray, rng: IntensityRange) -> np.ndarray:
    scale = ScaleIntensityRange(a_min=rng.low, a_max=rng.high, b_min=-1.0, b_max=1.0, clip=True, dtype=np.float32)
    return np.asarray(scale(array))


def denormalise(array: np.ndarray, rng: IntensityRange) -> np.ndarray:
    scale = ScaleIntensityRange(a_min=-1.0, a_max=1.0, b_min=rng.low, b_max=rng.high, clip=True, dtype=np.float32)
    return np.asarray(scale(array))


def air_threshold(slices: np.ndarray, least: float = 0.01, most: float = 0.1) -> float:
    """The head mask's threshold (a fraction of the range) for normalised slices ``(n, rows, cols)``.

    The air level is the median of the slices' outer rows and columns, which lie in air on nearly every head scan.
    Where it stays below ``least`` (brain-extracted, zero-filled and ordinary noisy scans) ``least`` already
    separates air from head and is kept. Where the air itself reaches it (a template, a scan whose air carries a
    floor) the threshold is twice the air level: that keeps most pure-noise air out (for Rician noise, about 94 %;
    the isolated specks left are dropped as components smaller than ``min_area``) and every tissue of a real scan
    in. A border brighter than ``most`` is not air but head (a field of view cropped to the head), and ``least``
    is kept.

    >>> air = np.full((1, 8, 8), -0.94); air[0, 2:6, 2:6] = 0.5   # air at 3 % of the range
    >>> round(air_threshold(air), 3), air_threshold(np.full((1, 8, 8), -1.0)), air_threshold(np.full((1, 8, 8), 0.2))
    (0.06, 0.01, 0.01)
    """
    border = np.concatenate([slices[:, [0, -1], :].ravel(), slices[:, :, [0, -1]].ravel()])
    level = (float(np.median(border)) + 1.0) / 2.0
    return 2.0 * level if least <= level <= most else least


def head_mask(slices: np.ndarray, threshold: float | None = None, min_area: int = 16) -> np.ndarray:
    """Boolean head mask of normalised slices ``(n, rows, cols)`` (see the module docstring); ``threshold`` is a
    fraction of the range, by default :func:`air_threshold` of the slices.

    Each slice is its own 2D problem (4-connected components), but all are labelled in one SimpleITK call: the
    slices are stacked with an empty plane between neighbours, so no component reaches across slices and the
    result is the slice-by-slice one (``tests/test_intensity.py`` checks it), without a few hundred calls per volume.
    """
    if threshold is None:
        threshold = air_threshold(slices)
    signal = slices > (-1.0 + 2.0 * threshold)
    if not signal.any():
        return np.zeros_like(signal)
    labels = sitk.ConnectedComponent(sitk.GetImageFromArray(_separated(signal).astype(np.uint8)))
    kept = sitk.GetArrayFromImage(sitk.RelabelComponent(labels, minimumObjectSize=min_area) > 0)[::2].astype(bool)
    return fill_holes(kept)


def _separated(stack: np.ndarray, fill: bool = False) -> np.ndarray:
    """``(n, rows, cols)`` -> ``(2n - 1, rows, cols)`` with a plane of ``fill`` between neighbouring slices."""
    out = np.full((2 * len(stack) - 1, *stack.shape[1:]), fill, dtype=stack.dtype)
    out[::2] = stack
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """A 2D mask (or a stack of them, ``(n, rows, cols)``, each slice on its own) with every background region that
    does not reach the border filled: what SimpleITK's ``BinaryFillhole`` does (4-connected background), by
    labelling the background once instead of reconstructing it, which on a noisy slice with thousands of small
    holes is about a hundred times faster.

    >>> ring = np.zeros((5, 5), bool); ring[1:4, 1:4] = True; ring[2, 2] = False
    >>> bool(fill_holes(ring)[2, 2]), bool(fill_holes(ring)[0, 0])
    (True, False)
    """
    stack = mask[None] if mask.ndim == 2 else mask
    # The planes between slices count as foreground here, so background never connects two slices either.
    background = _separated(~stack, fill=False)
    labels = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(background.astype(np.uint8))))
    border = np.unique(np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(), labels[:, :, 0].ravel(),
                                       labels[:, :, -1].ravel()]))
    outside = np.isin(labels[::2], border[border > 0])
    return (~outside)[0] if mask.ndim == 2 else ~outside


@dataclass(frozen=True)
class Padding:
    """How slices were padded (MONAI's ``SpatialPad``, symmetric), kept so that MONAI's ``inverse()`` can crop a
    network output of the padded size back to the original slices exactly."""

    transform: SpatialPad
    operation: dict

    def crop(self, padded: torch.Tensor) -> torch.Tensor:
        """``(n, c, padded rows, padded cols)`` -> ``(n, c, rows, cols)``: the inverse of the pad."""
        n, c = padded.shape[:2]
        tracked = MetaTensor(padded.reshape(n * c, *padded.shape[2:]))
        tracked.push_applied_operation(self.operation)
        cropped = self.transform.inverse(tracked).as_tensor()
        return cropped.reshape(n, c, *cropped.shape[1:])


def pad_slices(slices: torch.Tensor, multiple: int, min_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, Padding]:
    """Pad ``(n, c, rows, cols)`` symmetrically with background (-1) to a multiple of ``multiple`` (and at least
    ``min_size``); returns the padded tensor and how to crop it back (:meth:`Padding.crop`).

    >>> padded, padding = pad_slices(torch.zeros(2, 1, 181, 217), 4)
    >>> padded.shape, padding.crop(padded).shape
    (torch.Size([2, 1, 184, 220]), torch.Size([2, 1, 181, 217]))
    """
    n, c, rows, cols = slices.shape
    if min_size is not None:
        rows, cols = max(rows, min_size[0]), max(cols, min_size[1])
    size = (-(-rows // multiple) * multiple, -(-cols // multiple) * multiple)
    pad = SpatialPad(size, method="symmetric", mode="constant", value=-1.0)
    tracked = pad(MetaTensor(slices.reshape(n * c, *slices.shape[2:])))
    padding = Padding(pad, tracked.applied_operations[-1])
    return tracked.as_tensor().reshape(n, c, *size), padding


def pad_masks(masks: torch.Tensor, multiple: int, min_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Pad boolean masks exactly as :func:`pad_slices` pads their slices (the padding is outside the head)."""
    padded, _ = pad_slices(masks.float() * 2 - 1, multiple, min_size)
    return padded > 0
