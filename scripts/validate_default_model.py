"""Score a model on real MRI it never saw (../shared/data/real-t1t2), beside the reference points, once.

    python scripts/validate_default_model.py                 # the shipped model -> docs/validation.json, docs/img/
    python scripts/validate_default_model.py --model runs/x/model.pt --out runs/x/validation

For the stroke pair (3 T, brain-extracted, 1 mm) and the avg152 templates (whole head, 2 mm), both directions, with
the shared scorer ``../shared/tools/score_volumes.py`` (needs scipy) so numbers compare with data/README.md:

- "brain": inside the target's non-zero voxels (the stroke images are brain-extracted; for avg152 this is the head);
- "whole": every voxel of the image.

Beside the model: the input as the answer, one minus the input (inside the target's mask), and the per-intensity
lookup fitted on the pair itself (the mean target value of every input intensity: it cheats, and is the best any
pointwise map can do). Figures: input / translation / truth / |error| / confidence for the middle axial slice.

These scans are for measuring only: nothing here feeds back into training, configs or thresholds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mriganx.config import Direction
from mriganx.figures import grid, save_figure
from mriganx.frame import to_slices
from mriganx.inference import Translator
from mriganx.io import load_image, save_like, to_uint8

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real-t1t2"
SCORER = ROOT.parent / "shared" / "tools" / "score_volumes.py"
PAIRS = {
    "stroke": ("stroke_T1w.nii.gz", "stroke_T2w.nii.gz"),
    "avg152": ("avg152_T1w.nii.gz", "avg152_T2w.nii.gz"),
}


def score(prediction: Path, target: Path, mask: Path | None) -> dict[str, float]:
    command = [sys.executable, str(SCORER), str(prediction), str(target), *([str(mask)] if mask else [])]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def lookup(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The per-intensity lookup fitted on the pair: each input value -> the mean target value it co-occurs with."""
    keys = np.round(source, 3)
    values, inverse = np.unique(keys[mask], return_inverse=True)
    means = np.bincount(inverse, weights=target[mask]) / np.bincount(inverse)
    out = np.zeros_like(target)
    out[mask] = means[inverse]
    return out


def figure(source: np.ndarray, translation: np.ndarray, truth: np.ndarray, doubt: np.ndarray, affine: np.ndarray,
           title: str, path: Path) -> None:
    def unit(x: np.ndarray) -> np.ndarray:
        top = np.percentile(x[truth > 0], 99.5) if (truth > 0).any() else 1.0
        return np.clip(x / max(top, 1e-6), 0, 1)

    parts = [unit(source), unit(translation), unit(truth)]
    parts.append(np.abs(parts[1] - parts[2]) * (truth > 0))
    parts.append(doubt)
    slices = [to_slices(p, affine) for p in parts]
    k = slices[0].shape[0] // 2
    row = [to_uint8(s[k], 0.0, 1.0) if i < 3 else to_uint8(s[k], 0.0, 0.5) for i, s in enumerate(slices)]
    save_figure(grid([row], ["input", "translation", "truth", "|error| x2", "doubt x2"], [title],
                     scale=2 if row[0].shape[0] < 128 else 1), path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--figures", type=Path, default=None, help="figure folder (default: OUT/img)")
    args = parser.parse_args(argv)
    if not REAL.is_dir():
        raise SystemExit(f"{REAL}: the real validation scans are not here")
    translator = Translator.load(args.model, "cpu")
    figures = args.figures or args.out / "img"
    results: dict[str, dict] = {"model": translator.name, "weights_sha256": translator.model.weights_sha256()}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for pair, (t1_name, t2_name) in PAIRS.items():
            for direction in Direction:
                source_name, target_name = (t1_name, t2_name) if direction is Direction.T1_TO_T2 else (t2_name, t1_name)
                source, target = load_image(REAL / source_name), load_image(REAL / target_name)
                mask = target.array > 0
                ones = work / f"{pair}_ones.nii.gz"
                if not ones.exists():
                    save_like(np.ones_like(target.array), target, ones)
                result = translator.translate(source, direction, confidence=True)
                scale = np.percentile(source.array[mask], 99.5)
                candidates = {
                    "model": result.array,
                    "input": source.array,
                    "one_minus_input": (1 - np.clip(source.array / scale, 0, 1)) * mask,
                    "lookup_cheat": lookup(source.array, target.array, mask),
                }
                entry: dict[str, dict] = {}
                for name, array in candidates.items():
                    path = save_like(array.astype(np.float32), source, work / f"{pair}_{direction.value}_{name}.nii.gz",
                                     overwrite=True)
                    entry[name] = {"brain": score(path, REAL / target_name, None), "whole": score(path, REAL / target_name, ones)}
                results[f"{pair} {direction.value}"] = entry
                figure(source.array, result.array, target.array, result.confidence, source.affine,
                       f"{pair} {direction.value}, SSIM in brain {entry['model']['brain']['ssim_mask']:.2f}",
                       figures / f"validation-{pair}-{direction.value}.png")
                line = ", ".join(f"{name} {v['brain']['ssim_mask']:.3f}/{v['whole']['ssim_mask']:.3f}" for name, v in entry.items())
                print(f"{pair} {direction.value} SSIM brain/whole: {line}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "validation.json").write_text(json.dumps(results, indent=1))
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    """The validation table for docs/results.md: SSIM inside the brain (and over the whole image)."""
    names = ("model", "input", "one_minus_input", "lookup_cheat")
    lines = ["| pair, direction | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, entry in results.items():
        if isinstance(entry, dict) and "model" in entry:
            cells = [f"{entry[n]['brain']['ssim_mask']:.3f} / {entry[n]['whole']['ssim_mask']:.3f}" for n in names]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
