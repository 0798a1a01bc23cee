"""The slice frame: every volume, whatever its orientation on disk, is seen by the networks as a stack of axial
slices in one fixed in-plane orientation, and put back on its own voxel grid exactly afterwards.

The frame is the orientation of the reference PNG slices and of a standard axial DICOM image: the slice stack runs
inferior -> superior, rows run anterior (top) -> posterior, and columns run from the patient's right to the
patient's left. Left-right runs that way because it is how radiologists read axial images (looking up from the
feet) and how an axial DICOM image is stored (LPS: the row direction points to the patient's left), so axial DICOM
slices enter the frame without a flip. In nibabel axis codes the frame is ``("S", "P", "L")`` for the array axes
``(slice, row, column)``. The 181x217x181 MNI/BrainWeb grid becomes 181 slices of 217 rows x 181 columns.

Only axis permutations and flips are used, never resampling: ``from_slices(to_slices(a, A), A)`` is ``a`` exactly.
An oblique volume goes to the frame of its closest axes (nibabel's ``io_orientation``).

>>> import numpy as np
>>> ras = np.arange(2 * 3 * 4).reshape(2, 3, 4)   # x: L->R, y: P->A, z: I->S
>>> slices = to_slices(ras, np.eye(4))
>>> slices.shape                                   # (slices, rows, columns)
(4, 3, 2)
>>> bool((from_slices(slices, np.eye(4)) == ras).all())
True
"""

from __future__ import annotations

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

FRAME_AXCODES = ("S", "P", "L")
# The MNI152/BrainWeb grid in RAS voxel order (1 mm): the seed slices' plane is its (217, 181) axial slice.
MNI_SHAPE = (181, 217, 181)


def _to_frame(affine: np.ndarray) -> np.ndarray:
    return ornt_transform(io_orientation(affine), axcodes2ornt(FRAME_AXCODES))


def to_slices(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """A 3D array on the grid of ``affine`` -> ``(slices, rows, columns)`` in the slice frame."""
    if array.ndim != 3:
        raise ValueError(f"expected a 3D array, got shape {array.shape}")
    return np.ascontiguousarray(apply_orientation(array, _to_frame(affine)))


def from_slices(slices: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The exact inverse of :func:`to_slices`: slice-frame stack -> the voxel order of ``affine``."""
    back = ornt_transform(axcodes2ornt(FRAME_AXCODES), io_orientation(affine))
    return np.ascontiguousarray(apply_orientation(slices, back))
