"""Render docs/phantoms.png: three axial slices of the default phantom (seed 0), T1w beside T2w.

Slices are shown in the slice frame (mriganx.frame: anterior at the top, the patient's right on the image's left),
each contrast scaled by its own 99.9th percentile inside the head. Run from anywhere:

    python docs/make_phantom_figure.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # use this checkout's mriganx without installing it

from mriganx.frame import to_slices  # noqa: E402
from mriganx.io import to_uint8  # noqa: E402
from mriganx.synthetic import make_phantom  # noqa: E402

HEIGHTS = (0.42, 0.50, 0.58)  # fraction of the grid height, inferior -> superior
GAP, HEADER, ZOOM = 6, 22, 2


def _gray(image: np.ndarray, top: float) -> Image.Image:
    tile = Image.fromarray(to_uint8(image, 0.0, top))
    return tile.resize((ZOOM * tile.width, ZOOM * tile.height), Image.Resampling.BICUBIC)


def main(out: Path = Path(__file__).resolve().parent / "phantoms.png") -> Path:
    ph = make_phantom(seed=0)
    inside = ph.labels > 0
    columns = []
    for name, volume in (("T1w", ph.t1), ("T2w", ph.t2)):
        top = float(np.percentile(volume[inside], 99.9))
        slices = to_slices(volume, ph.affine)
        columns.append((name, [_gray(slices[round(h * (len(slices) - 1))], top) for h in HEIGHTS]))

    tile_w, tile_h = columns[0][1][0].size
    figure = Image.new("L", (2 * tile_w + 3 * GAP, HEADER + len(HEIGHTS) * (tile_h + GAP) + GAP), 0)
    draw = ImageDraw.Draw(figure)
    font = ImageFont.load_default()
    for c, (name, tiles) in enumerate(columns):
        left = GAP + c * (tile_w + GAP)
        draw.text((left + 4, 5), f"{name}   (patient's right on the left, anterior up)", fill=255, font=font)
        for r, tile in enumerate(tiles):
            top = HEADER + r * (tile_h + GAP)
            figure.paste(tile, (left, top))
            draw.text((left + 4, top + 4), f"{round(100 * HEIGHTS[r])}% height", fill=200, font=font)
    figure.save(out)
    return out


if __name__ == "__main__":
    print(main())
