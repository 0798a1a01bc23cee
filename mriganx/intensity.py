"""Intensity normalisation, the head mask and padding: what happens to slice values between the file and the network.

Normalisation maps each image robustly to [-1, 1]: the ``lower_percentile`` of all voxels (0 = the minimum, the
background of an MRI) goes to -1 and the ``upper_percentile`` of the voxels above it (the head, so that the field of
view does not matter) goes to 1; values beyond are clipped. The two input intensities are kept in an
:class:`IntensityRange` so that a network output in [-1, 1] can be mapped back: a translation is written in the
*target contrast's training range* (the median of the ranges of the training images of that contrast), documented
in ``model.pt`` and in ``docs/``.

The head mask marks voxels that carry signal: above ``threshold`` of the range, with holes filled slice by slice
(dark skull inside bright scalp is head) and specks smaller than ``min_area`` voxels dropped (noise in the air).

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
from monai.transforms import DivisiblePad, ScaleIntensityRange


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


def head_mask(slices: np.ndarray, threshold: float = 0.01, min_area: int = 16) -> np.ndarray:
    """Boolean head mask of normalised slices ``(n, rows, cols)`` (see the module docstring)."""
    signal = slices > (-1.0 + 2.0 * threshold)
    masks = np.zeros_like(signal)
    for index, plane in enumerate(signal):
        if not plane.any():
            continue
        image = sitk.GetImageFromArray(plane.astype(np.uint8))
        kept = sitk.RelabelComponent(sitk.ConnectedComponent(image), minimumObjectSize=min_area) > 0
        masks[index] = sitk.GetArrayFromImage(sitk.BinaryFillhole(kept)).astype(bool)
    return masks


@dataclass(frozen=True)
class Padding:
    """Where the original slice sits inside a padded one, for an exact crop back."""

    top: int
    left: int
    rows: int
    cols: int

    def crop(self, padded: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        return padded[..., self.top : self.top + self.rows, self.left : self.left + self.cols]


def pad_slices(slices: torch.Tensor, multiple: int, min_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, Padding]:
    """Pad ``(n, c, rows, cols)`` symmetrically with background (-1) to a multiple of ``multiple`` (and at least
    ``min_size``), with MONAI's DivisiblePad; returns the padded tensor and how to crop it back."""
    n, c, rows, cols = slices.shape
    target_rows, target_cols = rows, cols
    if min_size is not None:
        target_rows, target_cols = max(rows, min_size[0]), max(cols, min_size[1])
    target_rows = -(-target_rows // multiple) * multiple
    target_cols = -(-target_cols // multiple) * multiple
    # DivisiblePad pads to a multiple of k per spatial axis; k = the target size itself gives "exactly this size".
    pad = DivisiblePad(k=(target_rows, target_cols), mode="constant", value=-1.0)
    padded = torch.as_tensor(pad(slices.reshape(n * c, rows, cols))).reshape(n, c, target_rows, target_cols)
    top, left = (target_rows - rows) // 2, (target_cols - cols) // 2
    return padded.as_subclass(torch.Tensor), Padding(top, left, rows, cols)


def pad_masks(masks: torch.Tensor, multiple: int, min_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Pad boolean masks exactly as :func:`pad_slices` pads their slices (the padding is outside the head)."""
    padded, _ = pad_slices(masks.float() * 2 - 1, multiple, min_size)
    return padded > 0
