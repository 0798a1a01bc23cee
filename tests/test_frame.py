"""The slice frame: any stored orientation gives the same slice stack, and the inverse is exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

from mriganx.frame import from_slices, to_slices

ORIENTATIONS = ["RAS", "LPS", "LAS", "PIR", "ASL", "SRA"]


def reorient(array: np.ndarray, affine: np.ndarray, axcodes: str) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored in another voxel order: every voxel keeps its world position."""
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(axcodes)))
    return apply_orientation(array, transform), affine @ inv_ornt_aff(transform, array.shape)


def rotation(angle_deg: float) -> np.ndarray:
    """A small rotation about the superior axis (oblique, but the closest axes stay the same)."""
    a = np.deg2rad(angle_deg)
    out = np.eye(4)
    out[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return out


def test_frame_orientation_of_a_ras_volume() -> None:
    # In RAS voxel order x runs to the patient's right, y to anterior, z to superior.
    ras = np.zeros((5, 6, 7))
    ras[4, 0, 6] = 1  # the patient's far right, posterior, top
    slices = to_slices(ras, np.eye(4))
    assert slices.shape == (7, 6, 5)
    # Top slice; posterior = last row; patient's right = first column (radiological).
    assert slices[6, 5, 0] == 1


def test_181x217x181_grid_gives_reference_slice_shape() -> None:
    assert to_slices(np.zeros((181, 217, 181)), np.eye(4)).shape == (181, 217, 181)


@pytest.mark.parametrize("axcodes", ORIENTATIONS)
def test_every_orientation_gives_the_same_slices(axcodes: str) -> None:
    rng = np.random.default_rng(0)
    ras = rng.random((5, 6, 7))
    affine = np.diag([1.0, 1.2, 2.0, 1.0])
    stored, stored_affine = reorient(ras, affine, axcodes)
    expected = to_slices(ras, affine)
    np.testing.assert_array_equal(to_slices(stored, stored_affine), expected)
    oblique = rotation(12.0) @ stored_affine
    np.testing.assert_array_equal(to_slices(stored, oblique), expected)
    np.testing.assert_array_equal(from_slices(expected, stored_affine), stored)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 7)] * 3),
    axcodes=st.sampled_from(ORIENTATIONS + ["RPI", "ILA", "LSP"]),
    angle=st.floats(-30, 30),
    spacing=st.tuples(*[st.floats(0.3, 5.0)] * 3),
)
def test_inverse_restores_the_array_exactly(shape: tuple[int, int, int], axcodes: str, angle: float,
                                            spacing: tuple[float, float, float]) -> None:
    array = np.random.default_rng(1).random(shape).astype(np.float32)
    stored, affine = reorient(array, np.diag([*spacing, 1.0]), axcodes)
    affine = rotation(angle) @ affine
    slices = to_slices(stored, affine)
    assert sorted(slices.shape) == sorted(stored.shape)
    restored = from_slices(slices, affine)
    assert restored.dtype == stored.dtype
    np.testing.assert_array_equal(restored, stored)
