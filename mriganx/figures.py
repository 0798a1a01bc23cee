"""Pictures a person would rather look at than read: slices side by side with labels, as 8-bit PNG.

>>> import numpy as np
>>> tile = grid([[np.zeros((4, 6)), np.full((4, 6), 255.0)]], column_titles=["a", "b"], scale=1)
>>> tile.mode, tile.size[0] >= 12
('L', True)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from mriganx.io import atomic_output, to_uint8


def grid(
    rows: Sequence[Sequence[np.ndarray]],
    column_titles: Sequence[str] = (),
    row_titles: Sequence[str] = (),
    scale: int = 1,
    gap: int = 4,
) -> PILImage.Image:
    """Tile 2D images (8-bit, or floats on the 0..255 scale) into one labelled grayscale picture."""
    font = ImageFont.load_default()
    height = max(image.shape[0] for row in rows for image in row) * scale
    width = max(image.shape[1] for row in rows for image in row) * scale
    title_h = 14 if column_titles else 0
    label_w = 6 * max((len(t) for t in row_titles), default=0) + (8 if row_titles else 0)
    n_cols = max(len(row) for row in rows)
    canvas = PILImage.new("L", (label_w + n_cols * (width + gap), title_h + len(rows) * (height + gap)), 0)
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(column_titles):
        draw.text((label_w + c * (width + gap) + 2, 1), title, fill=255, font=font)
    for r, row in enumerate(rows):
        top = title_h + r * (height + gap)
        if r < len(row_titles):
            draw.text((2, top + height // 2 - 5), row_titles[r], fill=255, font=font)
        for c, image in enumerate(row):
            pixels = image if image.dtype == np.uint8 else to_uint8(image, 0.0, 255.0)
            tile = PILImage.fromarray(pixels, mode="L")
            if scale != 1:
                tile = tile.resize((pixels.shape[1] * scale, pixels.shape[0] * scale), PILImage.NEAREST)
            canvas.paste(tile, (label_w + c * (width + gap), top))
    return canvas


def save_figure(picture: PILImage.Image, path: str | Path) -> Path:
    """Write a picture as PNG atomically (an earlier figure of the same name is replaced)."""
    with atomic_output(path, overwrite=True) as temporary:
        picture.save(temporary, format="PNG")
    return Path(path)
