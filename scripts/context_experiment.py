"""2D against 2.5D at the same budget on phantom volumes, and how well the confidence map ranks the true error.

Not a test: a measurement for docs/results.md. Writes phantoms (2 mm, as in the demo: T1w of four subjects and T2w
of four others, so training is unpaired, and held-out subjects with both), trains the ``cpu`` config once per
``--contexts`` value for the same number of steps (the learning-rate schedule fitted to them), and scores every
held-out subject in both directions: SSIM, MAE and the through-plane error (see mriganx.evaluation), the confidence
map's ranking, and which of the map's two parts ranks the error better. It also draws coronal and sagittal
reformats, where slice-to-slice flicker shows as horizontal stripes.

    python scripts/context_experiment.py --out runs/context --steps 1500 --contexts 0 1 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from mriganx.config import Direction, IntensityScale, load_config, override
from mriganx.evaluation import evaluate, spearman
from mriganx.figures import grid, save_figure
from mriganx.frame import MNI_SHAPE
from mriganx.inference import Translator
from mriganx.io import load_image, to_uint8
from mriganx.slices import network_view
from mriganx.synthetic import write_subjects
from mriganx.training import Trainer


def make_data(out: Path, train_subjects: int, held_out: int, spacing: float, seed: int) -> tuple[Path, Path, list[dict[str, Path]]]:
    shape = tuple(round(n / spacing) for n in MNI_SHAPE)
    written = write_subjects(out / "phantoms", train_subjects + held_out, seed, shape=shape, spacing=spacing)
    t1_dir, t2_dir = out / "train" / "T1w", out / "train" / "T2w"
    for folder in (t1_dir, t2_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for index, subject in enumerate(written[:train_subjects]):
        key, folder = ("t1", t1_dir) if index % 2 == 0 else ("t2", t2_dir)
        shutil.copy(subject[key], folder / subject[key].name)
    return t1_dir, t2_dir, written[train_subjects:]


def train_for_steps(config_name: str, context: int, steps: int, t1_dir: Path, t2_dir: Path, run: Path, seed: int) -> tuple[Path, float]:
    cfg = override(load_config(config_name), {"model.context_slices": context, "train.seed": seed})
    per_epoch = Trainer(cfg, t1_dir, t2_dir, run, progress=False).steps_per_epoch
    epochs = max(2, round(steps / per_epoch))
    cfg = override(cfg, {"train.epochs": epochs // 2, "train.epochs_decay": epochs - epochs // 2,
                         "train.strip_every_epochs": max(1, epochs // 8)})
    started = time.perf_counter()
    result = Trainer(cfg, t1_dir, t2_dir, run, progress=False).run()
    return result.model_path, time.perf_counter() - started


def confidence_parts(translator: Translator, subject: dict[str, Path], direction: Direction) -> dict[str, float]:
    """Spearman of |error| with each part of the confidence map alone and with their sum (head voxels)."""
    source, target = load_image(subject[direction.source]), load_image(subject[direction.target])
    view, truth = network_view(source, translator.data_config), network_view(target, translator.data_config).slices
    x, m, truth = torch.from_numpy(view.slices)[:, None], torch.from_numpy(view.masks)[:, None], torch.from_numpy(truth)[:, None]
    out = translator.translate_slices(x, m, direction)
    spread, cycle = (part[m].numpy() for part in translator.doubt_parts(x, m, out, direction))
    error = ((out - truth).abs() / 2)[m].numpy()
    return {"spearman_spread": spearman(spread, error), "spearman_cycle": spearman(cycle, error),
            "spearman_sum": spearman(spread + cycle, error)}


def reformats(volumes: dict[str, np.ndarray], path: Path) -> None:
    """Coronal and sagittal mid-sections of slice-frame volumes ``(slices, rows, cols)``, superior at the top."""
    rows, titles = [], []
    for name, slices in volumes.items():
        _, height, width = slices.shape
        coronal = slices[::-1, height // 2, :]
        sagittal = slices[::-1, :, width // 2]
        rows.append([to_uint8(coronal), to_uint8(sagittal)])
        titles.append(name)
    save_figure(grid(rows, ["coronal", "sagittal"], titles, scale=2), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", default="cpu")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--contexts", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-subjects", type=int, default=8)
    parser.add_argument("--held-out", type=int, default=2)
    parser.add_argument("--spacing", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    t1_dir, t2_dir, held = make_data(args.out, args.train_subjects, args.held_out, args.spacing, args.seed)
    results, shown = {}, {}
    for context in args.contexts:
        run = args.out / f"context-{context}"
        model = run / "model.pt"
        seconds = None
        if not model.exists():
            model, seconds = train_for_steps(args.config, context, args.steps, t1_dir, t2_dir, run, args.seed)
        translator = Translator.load(model, "cpu")
        entry: dict[str, object] = {"train_seconds": seconds, "steps": args.steps}
        for direction in Direction:
            per_subject = []
            for index, subject in enumerate(held):
                started = time.perf_counter()
                report = evaluate(translator, subject[direction.source], subject[direction.target], direction,
                                  scale=IntensityScale.ROBUST, confidence=True)
                summary = report.summary
                per_subject.append({"subject": index, **{k: summary["mean"][k] for k in ("ssim", "ssim_mask", "mae_mask", "through_plane_error")},
                                    "confidence": summary["confidence"], **confidence_parts(translator, subject, direction),
                                    "seconds": time.perf_counter() - started})
            entry[direction.value] = per_subject
            print(context, direction.value, json.dumps(per_subject), flush=True)
        results[f"context_slices={context}"] = entry
        image = load_image(held[0]["t1"])
        view = network_view(image, translator.data_config)
        out = translator.translate_slices(torch.from_numpy(view.slices)[:, None], torch.from_numpy(view.masks)[:, None], Direction.T1_TO_T2)
        shown["2D" if context == 0 else f"2.5D k={context}"] = out[:, 0].numpy()
    truth = network_view(load_image(held[0]["t2"]), translator.data_config).slices
    reformats({"true T2w": truth, **shown}, args.out / "reformats.png")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
