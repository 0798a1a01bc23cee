"""The network view: frame, in-plane resampling and back, normalisation, masks, context stacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mriganx.config import DataConfig
from mriganx.io import Image, ImageKind
from mriganx.slices import centre, frame_spacing, network_view, with_context
from mriganx.synthetic import make_phantom


def image_of(array: np.ndarray, affine: np.ndarray) -> Image:
    return Image(array.astype(np.float32), affine, ImageKind.NIFTI, Path("test"))


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "PIR"])
def test_frame_spacing_follows_the_axes_whatever_the_storage_order(axcodes: str) -> None:
    phantom = make_phantom(seed=1, shape=(40, 44, 36), spacing=(3.0, 4.0, 5.0), axcodes=axcodes)
    # In the frame: slices along S (z: 5 mm), rows along P (y: 4 mm), columns along L (x: 3 mm).
    assert frame_spacing(phantom.affine) == pytest.approx((5.0, 4.0, 3.0))


def test_without_a_training_resolution_the_view_is_the_frame_itself() -> None:
    phantom = make_phantom(seed=2, shape=(44, 52, 40), spacing=4.0)
    view = network_view(image_of(phantom.t1, phantom.affine), DataConfig())
    assert not view.resampled and view.slices.shape == (40, 52, 44)
    assert view.slices.min() >= -1 and view.slices.max() <= 1 and view.masks.any()
    np.testing.assert_array_equal(view.to_grid(view.slices).shape, phantom.t1.shape)


def test_resampling_to_the_training_resolution_and_back_keeps_the_grid_and_the_image() -> None:
    phantom = make_phantom(seed=3, shape=(60, 72, 20), spacing=(3.0, 3.0, 6.0), axcodes="LPS")
    image = image_of(phantom.t1, phantom.affine)
    view = network_view(image, DataConfig(in_plane_mm=1.0))
    assert view.resampled and view.slices.shape == (20, 216, 180)  # 72 x 3 mm rows, 60 x 3 mm columns
    back = view.to_grid(view.slices)
    assert back.shape == phantom.t1.shape
    plain = network_view(image, DataConfig())
    head = plain.to_grid(plain.masks, mode="nearest")
    # Up and down again blurs edges a little; inside the head the values come back closely.
    assert np.abs(back - plain.to_grid(plain.slices))[head].mean() < 0.05
    mask = view.to_grid(view.masks, mode="nearest")
    assert mask.dtype == bool and (mask == head).mean() > 0.97


def test_a_single_slice_is_resampled_in_plane_only() -> None:
    array = np.zeros((50, 60, 1), np.float32)
    array[10:40, 15:45] = 100.0
    view = network_view(image_of(array, np.diag([0.5, 0.5, 3.0, 1.0])), DataConfig(in_plane_mm=1.0))
    assert view.slices.shape == (1, 30, 25)
    assert view.to_grid(view.slices).shape == (50, 60, 1)


def test_context_stacks_and_their_centre() -> None:
    slices = torch.arange(5.0)[:, None, None].expand(5, 2, 2)
    stacks = with_context(slices, 1)
    assert stacks.shape == (5, 3, 2, 2)
    assert torch.equal(centre(stacks)[:, 0], slices)
    assert stacks[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0] and stacks[4, :, 0, 0].tolist() == [3.0, 4.0, 4.0]
