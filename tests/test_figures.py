"""Figures: tiles land where asked, 8-bit and float tiles agree, and figures are written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mriganx.figures import grid, save_figure


def test_grid_places_tiles_by_row_and_column() -> None:
    black, white = np.zeros((10, 12), np.uint8), np.full((10, 12), 255, np.uint8)
    picture = np.asarray(grid([[black, white], [white, black]], gap=4))
    assert picture.shape == (2 * (10 + 4), 2 * (12 + 4))
    assert picture[:10, :12].max() == 0 and picture[:10, 16:28].min() == 255
    assert picture[14:24, :12].min() == 255 and picture[14:24, 16:28].max() == 0


def test_float_tiles_on_the_8bit_scale_match_uint8_tiles() -> None:
    ramp = np.linspace(0, 255, 48, dtype=np.float64).reshape(6, 8)
    as_float = np.asarray(grid([[ramp]], gap=0))
    as_uint8 = np.asarray(grid([[np.rint(ramp).astype(np.uint8)]], gap=0))
    assert np.array_equal(as_float, as_uint8)


def test_titles_and_scale_enlarge_the_canvas() -> None:
    tile = np.zeros((8, 8), np.uint8)
    plain = grid([[tile]], gap=0)
    labelled = grid([[tile]], column_titles=["input"], row_titles=["worst"], scale=3, gap=0)
    assert plain.size == (8, 8)
    assert labelled.size[0] > 24 and labelled.size[1] > 24


def test_save_figure_writes_a_png_and_replaces_an_earlier_one(tmp_path: Path) -> None:
    target = tmp_path / "figs" / "f.png"
    save_figure(grid([[np.zeros((4, 4), np.uint8)]]), target)
    save_figure(grid([[np.full((6, 5), 255, np.uint8)]], gap=0), target)
    with Image.open(target) as image:
        assert image.size == (5, 6) and np.asarray(image).min() == 255
    assert [p.name for p in target.parent.iterdir()] == ["f.png"]  # no part files left behind
