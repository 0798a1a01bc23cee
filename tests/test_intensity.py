"""Normalisation, head mask and padding."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mriganx.intensity import IntensityRange, air_threshold, denormalise, fit_range, head_mask, median_range, normalise, pad_slices


def test_range_ignores_background_and_outliers() -> None:
    image = np.zeros((100, 100), np.float32)
    image[20:80, 20:80] = np.linspace(100, 1000, 3600).reshape(60, 60)
    image[50, 50] = 1e6  # one hot voxel must not set the scale
    rng = fit_range(image, 0.0, 99.5)
    assert rng.low == 0.0
    assert 990 <= rng.high <= 1000
    out = normalise(image, rng)
    assert out.min() == -1.0 and out.max() == 1.0
    assert (out[0] == -1).all(), "background stays at -1"


@settings(max_examples=40, deadline=None)
@given(low=st.floats(-500, 500), width=st.floats(1, 5000), seed=st.integers(0, 100))
def test_normalise_denormalise_roundtrip(low: float, width: float, seed: int) -> None:
    rng = IntensityRange(low, low + width)
    values = np.random.default_rng(seed).uniform(low, low + width, (16, 16)).astype(np.float32)
    np.testing.assert_allclose(denormalise(normalise(values, rng), rng), values, rtol=1e-4, atol=width * 1e-5)


def test_median_range() -> None:
    assert median_range([IntensityRange(0, 10), IntensityRange(2, 30), IntensityRange(1, 20)]) == IntensityRange(1, 20)


def test_head_mask_fills_dark_skull_and_drops_specks() -> None:
    slices = np.full((1, 60, 60), -1.0, np.float32)
    yy, xx = np.mgrid[:60, :60]
    radius = np.hypot(yy - 30, xx - 30)
    slices[0][radius < 25] = 0.5  # scalp and brain
    slices[0][(radius > 19) & (radius < 22)] = -1.0  # a skull ring with no signal
    slices[0, 2, 2] = 0.8  # one noisy voxel in the air
    mask = head_mask(slices)[0]
    assert mask[30, 30] and mask[30, 30 + 20], "the dark ring inside the head belongs to the head"
    assert not mask[2, 2], "a speck in the air is not head"
    assert not mask[0, 0]


def test_the_head_mask_follows_the_air_level_of_the_scan() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:60, :60]
    head = np.hypot(yy - 30, xx - 30) < 20
    # Air with a floor at 4 % of the range (a template's, or an offset's); dim tissue at 15 %, bright at 75 %.
    slices = np.where(head, np.where(xx < 30, -0.7, 0.5), -0.92 + 0.01 * rng.standard_normal((60, 60)))[None]
    mask = head_mask(slices.astype(np.float32))[0]
    assert np.array_equal(mask, head), "the air is not head, every tissue is"
    assert head_mask(slices.astype(np.float32), threshold=0.01)[0].all(), "the fixed 1 % takes the whole field"
    black = np.where(head, slices[0], -1.0)[None]
    assert air_threshold(black) == 0.01


def test_padding_is_exactly_undone() -> None:
    slices = torch.rand(3, 1, 217, 181) * 2 - 1
    padded, padding = pad_slices(slices, 4)
    assert padded.shape[-2:] == (220, 184)
    assert (padded[..., 0, :] == -1).all(), "padding is background"
    assert torch.equal(padding.crop(padded), slices)
    padded, padding = pad_slices(slices, 4, (256, 200))
    assert padded.shape[-2:] == (256, 200)
    assert torch.equal(padding.crop(padded), slices)


def test_fill_holes_equals_simpleitks_binary_fillhole() -> None:
    import SimpleITK as sitk

    from mriganx.intensity import fill_holes

    rng = np.random.default_rng(0)
    for density in (0.3, 0.5, 0.7):
        mask = rng.random((48, 56)) < density
        expected = sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(mask.astype(np.uint8)))).astype(bool)
        assert np.array_equal(fill_holes(mask), expected)


def test_head_mask_is_the_slice_by_slice_mask() -> None:
    """All slices labelled at once give each slice's own 2D answer: components and holes never cross slices."""
    import SimpleITK as sitk

    rng = np.random.default_rng(1)
    slices = np.where(rng.random((6, 40, 36)) < 0.45, 1.0, -1.0).astype(np.float32)
    slices[2] = -1.0  # an empty slice between busy ones
    slices[4, 5:30, 5:30] = 1.0  # a big blob with a hole, above and below noise
    slices[4, 12:20, 12:20] = -1.0
    expected = []
    for plane in slices > -0.98:
        if not plane.any():
            expected.append(np.zeros_like(plane))
            continue
        kept = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray(plane.astype(np.uint8))), minimumObjectSize=16) > 0
        expected.append(sitk.GetArrayFromImage(sitk.BinaryFillhole(kept)).astype(bool))
    assert np.array_equal(head_mask(slices), np.stack(expected))
    assert head_mask(slices)[4, 15, 15]  # the hole is filled
