"""The real-scan table of docs/results.md: does a model's translation put the tissues in the right order on every
real scan, and does it leave the background alone? With figures (input | translation | truth where there is one).

    python scripts/real_scan_table.py                        # the shipped model on real-dev -> runs/real-scans/
    python scripts/real_scan_table.py --validation           # ... and, once, on real-t1t2 (stroke, avg152)
    python scripts/real_scan_table.py --model runs/x/model.pt --out runs/x/real-scans

For each scan, translated in the direction its name states (``--direction`` given explicitly, as issue 22 asks):

- **tissue order**: the input's brain (its brain mask where one ships, else the voxels at least 12 mm inside the
  head in-plane, past scalp and skull) split into three intensity classes by k-means; which class is CSF, grey or
  white matter follows from the input's contrast (T1w: dark CSF, bright white matter; T2w the reverse). The median
  translated value of each class must order them as the target contrast does: a synthetic T2w CSF > GM > WM, a
  synthetic T1w WM > GM > CSF.
- **background**: the percentage of voxels outside the input's head mask (air) that the translation makes brighter
  than a tenth of its own 99.5th percentile (0 = dark air everywhere: no haze, no blocks); and for brain-extracted
  inputs the same outside the input's non-zero voxels (0 = no rim or skull painted on).

Figures go to ``--out`` (``<scan>.png``, three axial slices).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from mriganx.config import Direction
from mriganx.figures import grid, save_figure
from mriganx.frame import to_slices
from mriganx.inference import Translator
from mriganx.intensity import head_mask, normalise, fit_range
from mriganx.io import load_image, to_uint8
from mriganx.slices import frame_spacing

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEV = [  # (file, direction, brain mask or None, truth or None)
    ("real-dev/tcga-DU-7294_desc-brain_T1w", "t1-to-t2", "real-dev/tcga-DU-7294_desc-brain_mask", "real-dev/tcga-DU-7294_desc-brain_T2w"),
    ("real-dev/tcga-DU-7294_desc-brain_T2w", "t2-to-t1", "real-dev/tcga-DU-7294_desc-brain_mask", "real-dev/tcga-DU-7294_desc-brain_T1w"),
    ("real-dev/brats-GLI-00001_desc-brain_T1w", "t1-to-t2", "real-dev/brats-GLI-00001_desc-brain_mask", "real-dev/brats-GLI-00001_desc-brain_T2w"),
    ("real-dev/brats-GLI-00001_desc-brain_T2w", "t2-to-t1", "real-dev/brats-GLI-00001_desc-brain_mask", "real-dev/brats-GLI-00001_desc-brain_T1w"),
    ("real-dev/brats-GLI-00001_desc-brain_ce-gadolinium_T1w", "t1-to-t2", "real-dev/brats-GLI-00001_desc-brain_mask", "real-dev/brats-GLI-00001_desc-brain_T2w"),
    ("real-dev/tcga-FG-6692_T1w", "t1-to-t2", None, None),
    ("real-dev/tcga-FG-6692_ce-gadolinium_T1w", "t1-to-t2", None, None),
    ("real-dev/tcga-FG-6692_T2w", "t2-to-t1", None, None),
    ("real-dev/aomic-0001_T1w", "t1-to-t2", None, None),
    ("real-dev/aomic-0001_desc-brain_T1w", "t1-to-t2", None, None),
    ("real-dev/aomic-0002_T1w", "t1-to-t2", None, None),
    ("real-dev/aomic-0002_desc-brain_T1w", "t1-to-t2", None, None),
]
VALIDATION = [
    ("real-t1t2/stroke_T1w", "t1-to-t2", None, "real-t1t2/stroke_T2w"),
    ("real-t1t2/stroke_T2w", "t2-to-t1", None, "real-t1t2/stroke_T1w"),
    ("real-t1t2/avg152_T1w", "t1-to-t2", None, "real-t1t2/avg152_T2w"),
    ("real-t1t2/avg152_T2w", "t2-to-t1", None, "real-t1t2/avg152_T1w"),
]
DEPTH_MM = 12.0


def brain_region(slices: np.ndarray, head: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Voxels at least DEPTH_MM inside the head, slice by slice."""
    return np.stack([ndimage.distance_transform_edt(m, sampling=spacing) >= DEPTH_MM for m in head])


def three_classes(values: np.ndarray, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """1D k-means with three classes, started at the 15th/50th/85th percentiles; labels 0 (dark) .. 2 (bright)."""
    centres = np.percentile(values, [15, 50, 85])
    for _ in range(iterations):
        labels = np.argmin(np.abs(values[:, None] - centres[None]), axis=1)
        centres = np.array([values[labels == k].mean() if (labels == k).any() else centres[k] for k in range(3)])
    return labels, centres


def bright_share(values: np.ndarray, top: float) -> float:
    """Percentage of ``values`` above a tenth of the translation's 99.5th percentile: haze, blocks or a painted rim."""
    return round(100 * float((values > 0.1 * top).mean()) if values.size else 0.0, 3)


def assess(translator: Translator, name: str, direction: str, mask_name: str | None, truth_name: str | None,
           out: Path) -> dict:
    image = load_image(DATA / f"{name}.nii.gz")
    result = translator.translate(image, Direction(direction))
    spacing = frame_spacing(image.affine)
    x, y = to_slices(image.array, image.affine), to_slices(result.array, image.affine)
    head = head_mask(normalise(x, fit_range(x)))
    brain = (to_slices(load_image(DATA / f"{mask_name}.nii.gz").array, image.affine) > 0 if mask_name
             else brain_region(x, head, spacing[1:]))
    labels, _ = three_classes(x[brain].astype(np.float64))
    source_is_t1 = direction == "t1-to-t2"
    tissue = ["CSF", "GM", "WM"] if source_is_t1 else ["WM", "GM", "CSF"]
    medians = {tissue[k]: float(np.median(y[brain][labels == k])) for k in range(3)}
    top = float(np.percentile(y[head], 99.5)) or 1.0
    order_ok = (medians["CSF"] > medians["GM"] > medians["WM"]) if source_is_t1 else (medians["WM"] > medians["GM"] > medians["CSF"])
    row = {"scan": Path(name).name, "direction": direction, "order_ok": bool(order_ok),
           **{k: round(v / top, 3) for k, v in medians.items()},
           "air_bright_pct": bright_share(y[~head], top)}
    if "desc-brain" in name or name.startswith("real-t1t2/stroke"):
        row["outside_brain_bright_pct"] = bright_share(y[x <= x.min()], top)
    shown = [int(i) for i in np.linspace(0, len(x) - 1, 5)[1:4]]
    columns = [x, y] + ([to_slices(load_image(DATA / f"{truth_name}.nii.gz").array, image.affine)] if truth_name else [])
    rows = [[to_uint8(np.flipud(c[i]), c[head].min(), np.percentile(c[head], 99.5)) for c in columns] for i in shown]
    titles = ["input", "translation"] + (["truth"] if truth_name else [])
    save_figure(grid(rows, column_titles=titles, scale=1), out / f"{Path(name).name}.png")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "real-scans")
    parser.add_argument("--validation", action="store_true", help="also the validation scans (score once, at the end)")
    args = parser.parse_args(argv)
    translator = Translator.load(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [assess(translator, *case, args.out) for case in DEV + (VALIDATION if args.validation else [])]
    (args.out / "table.json").write_text(json.dumps(rows, indent=1))
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
