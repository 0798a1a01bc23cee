"""The fast conversion path (empty slices skipped, batched) equals the plain one (every slice, one at a time)."""

from __future__ import annotations

from pathlib import Path

import torch

from mriganx.config import Direction
from mriganx.frame import to_slices
from mriganx.inference import Translator
from mriganx.intensity import fit_range, head_mask, normalise
from mriganx.io import load_image

# Batching changes the order of floating-point sums inside convolutions; nothing else differs.
TOLERANCE = 1e-5


def test_fast_path_matches_plain_path(smoke_model: Path, phantom_dirs: dict[str, Path]) -> None:
    translator = Translator.load(smoke_model, "cpu")
    image = load_image(phantom_dirs["held_t1"])
    slices = normalise(to_slices(image.array, image.affine), fit_range(image.array))
    masks = head_mask(slices)
    assert not masks.any(axis=(1, 2)).all(), "the test volume has empty slices to skip"
    x, m = torch.from_numpy(slices)[:, None], torch.from_numpy(masks)[:, None]
    plain = translator.translate_slices(x, m, Direction.T1_TO_T2, batch_size=1, skip_empty=False)
    fast = translator.translate_slices(x, m, Direction.T1_TO_T2, batch_size=16, skip_empty=True)
    assert plain.shape == fast.shape == x.shape
    assert torch.allclose(plain, fast, atol=TOLERANCE)
    assert (fast[~m] == -1).all()
