"""An image as the networks see it: axial slices in the slice frame, resampled in-plane to the model's training
resolution, normalised by the image's own robust range, with their head masks; and the exact way back.

Training data, inference and evaluation all prepare images through :func:`network_view`, so a model sees a user's
scan exactly as it saw its training images. The way back (:meth:`NetworkView.to_grid`) resizes the slices to the
input's own in-plane size and undoes the slice frame, so a translation always lands on the input's voxel grid
(same shape and voxel order: the geometry contract of :mod:`mriganx.io` does not depend on the resampling).

In-plane resampling is on when the data config names a training resolution (``data.in_plane_mm``): a 0.5 mm scan
of 512x512 is seen as 256x256 slices of 1 mm, a 2 mm template as slices twice its size. Slices never mix across the
through-plane axis, so thick slices stay thick.

2.5D models see each slice with its neighbours (:func:`with_context`); pictures and per-slice scores use the middle
channel (:func:`centre`).

>>> import numpy as np
>>> from mriganx.config import DataConfig
>>> from pathlib import Path
>>> from mriganx.io import Image, ImageKind
>>> array = np.zeros((20, 24, 3), np.float32); array[5:15, 6:18] = 100.0
>>> image = Image(array, np.diag([2.0, 2.0, 2.0, 1.0]), ImageKind.NIFTI, Path("x"))
>>> view = network_view(image, DataConfig(in_plane_mm=1.0))
>>> view.slices.shape                     # 3 slices of 48 rows (P-A, 24 x 2 mm) x 40 columns (R-L, 20 x 2 mm)
(3, 48, 40)
>>> view.to_grid(view.slices).shape       # back on the input's grid
(20, 24, 3)
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch
from monai.transforms import Resize
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

from mriganx.config import DataConfig
from mriganx.frame import FRAME_AXCODES, from_slices, to_slices
from mriganx.intensity import IntensityRange, fit_range, head_mask, normalise
from mriganx.io import Image

__all__ = ["NetworkView", "network_view", "frame_spacing", "with_context", "centre"]


def frame_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel sizes in mm along the slice frame's axes (slice, row, column) of an image with ``affine``.

    >>> frame_spacing(np.diag([1.0, 2.0, 3.0, 1.0]))   # RAS: slices along z, rows along y, columns along x
    (3.0, 2.0, 1.0)
    """
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(FRAME_AXCODES))
    spacing = [0.0, 0.0, 0.0]
    for source_axis, (frame_axis, _) in enumerate(transform):
        spacing[int(frame_axis)] = float(zooms[source_axis])
    return spacing[0], spacing[1], spacing[2]


@dataclass
class NetworkView:
    """Normalised slices ``(n, rows, cols)`` in [-1, 1], their boolean head masks, the intensity range used, and
    what the way back to the input's grid needs."""

    slices: np.ndarray
    masks: np.ndarray
    range: IntensityRange
    affine: np.ndarray
    grid_size: tuple[int, int]  # rows and columns of the input's own slices, before any resampling

    @property
    def resampled(self) -> bool:
        return tuple(self.slices.shape[1:]) != self.grid_size

    def to_grid(self, values: np.ndarray, mode: str = "bilinear") -> np.ndarray:
        """Slices ``(n, rows, cols)`` of this view (a translation, a confidence map) -> an array in the input's
        shape and voxel order. ``mode="nearest"`` for masks and labels."""
        values = np.asarray(values)
        if self.resampled:
            dtype = values.dtype
            back = Resize(self.grid_size, mode=mode, anti_aliasing=False)
            values = np.asarray(back(torch.from_numpy(values.astype(np.float32))))
            values = values > 0.5 if dtype == bool else values.astype(dtype)
        return from_slices(values, self.affine)


def network_view(image: Image, config: DataConfig) -> NetworkView:
    """An :class:`mriganx.io.Image` as the networks see it (see the module docstring)."""
    array, affine = image.array, image.affine
    rng = fit_range(array, config.lower_percentile, config.upper_percentile)
    slices = to_slices(array, affine)
    grid_size = (slices.shape[1], slices.shape[2])
    if config.in_plane_mm:
        _, row_mm, col_mm = frame_spacing(affine)
        size = (max(1, round(grid_size[0] * row_mm / config.in_plane_mm)),
                max(1, round(grid_size[1] * col_mm / config.in_plane_mm)))
        if size != grid_size:
            # Area averaging when shrinking (no aliasing of fine detail), bilinear when enlarging.
            mode = "area" if size[0] * size[1] < grid_size[0] * grid_size[1] else "bilinear"
            slices = np.asarray(Resize(size, mode=mode)(torch.from_numpy(slices.astype(np.float32))))
    normalised = normalise(slices, rng)
    return NetworkView(normalised, head_mask(normalised), rng, affine, grid_size)


def with_context(slices: torch.Tensor, k: int) -> torch.Tensor:
    """Stacks ``(n, 2k+1, ...)`` of each slice of ``(n, ...)`` between its k neighbours on either side (the channel
    order follows the slice order; the centre channel is the slice itself). Past the first and last slice the edge
    slice repeats, so a single 2D slice becomes 2k+1 copies of itself.

    >>> with_context(torch.arange(3.0), 1).tolist()
    [[0.0, 0.0, 1.0], [0.0, 1.0, 2.0], [1.0, 2.0, 2.0]]
    """
    n = slices.shape[0]
    offsets = torch.arange(-k, k + 1)
    index = (torch.arange(n)[:, None] + offsets[None, :]).clamp(0, n - 1)
    return slices[index]


def centre(stacks: torch.Tensor) -> torch.Tensor:
    """The middle channel of ``(n, 2k+1, rows, cols)`` stacks, as ``(n, 1, rows, cols)``: the slice itself."""
    middle = stacks.shape[1] // 2
    return stacks[:, middle : middle + 1]
