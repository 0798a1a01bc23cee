"""The unpaired slice data set: what gets cached, what gets skipped, and how samples are drawn."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import pytest
import torch

from mriganx.config import DataConfig
from mriganx.data import UnpairedSampler, load_slices
from mriganx.io import find_images
from mriganx.errors import MriganxError
from tests.helpers import SEED_SET, needs_shared


def test_volumes_become_head_slices_in_the_frame(phantom_dirs: dict[str, Path]) -> None:
    config = DataConfig(min_head_fraction=0.05)
    data = load_slices(phantom_dirs["t1"], config)
    volume = nib.load(next(phantom_dirs["t1"].iterdir()))
    x, y, z = volume.shape
    assert data.slices.shape[1:] == (1, -(-y // 4) * 4, -(-x // 4) * 4)  # rows = A->P, cols = R->L, padded
    assert len(data) < 2 * z, "slices with too little head are left out"
    head = data.masks.float().mean(dim=(1, 2, 3))
    assert (head >= 0.04).all()
    assert data.slices.min() >= -1 and data.slices.max() <= 1
    assert (data.slices[~data.masks] == -1).all(), "outside the head is background"
    assert len(data.histogram()) == 64 and sum(data.histogram()) == int(data.masks.sum())


def test_non_images_are_skipped_with_a_warning_and_bad_images_stop(phantom_dirs: dict[str, Path], tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    source = next(phantom_dirs["t1"].iterdir())
    (folder / source.name).write_bytes(source.read_bytes())
    (folder / "notes.txt").write_text("scanner log")
    (folder / "sidecar.json").write_text("{}")
    with caplog.at_level(logging.WARNING):
        assert find_images(folder) == [folder / source.name]
    assert "notes.txt" in caplog.text and "skipped 2" in caplog.text
    (folder / "broken.nii.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(MriganxError, match="broken.nii.gz"):
        load_slices(folder, DataConfig())
    with pytest.raises(MriganxError, match="holds no"):
        find_images((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_sampler_draws_independent_reproducible_batches(phantom_dirs: dict[str, Path]) -> None:
    config = DataConfig(crop_size=(32, 32), flip=True, affine_prob=0.5)
    t1, t2 = load_slices(phantom_dirs["t1"], config), load_slices(phantom_dirs["t2"], config)
    a = UnpairedSampler(t1, t2, config, seed=7)
    b = UnpairedSampler(t1, t2, config, seed=7)
    first = a.sample(6)
    again = b.sample(6)
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    x1, m1, x2, m2 = first
    assert x1.shape == x2.shape == (6, 1, 32, 32) and m1.dtype == torch.bool
    assert not torch.equal(a.sample(6)[0], x1), "the next batch differs"
    assert x1.min() >= -1.001 and x1.max() <= 1.001


@needs_shared(SEED_SET)
def test_reference_pngs_cache_as_one_set() -> None:
    data = load_slices(SEED_SET / "trainT1", DataConfig())
    assert len(data) == 43 and data.slices.shape[-2:] == (220, 184)
    assert data.typical_range.low == 0.0 and 150 < data.typical_range.high <= 255
