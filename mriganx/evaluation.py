"""Evaluate a model: paired metrics against true target-contrast images, or honest unpaired measures without them.

Paired (``evaluate(model, source, target)``): ``source`` and ``target`` are two images on one grid, or two folders
of slices paired by file name or by slice index (``Image #70`` pairs with ``Image #70``). Every slice of
the slice frame that shows head is scored; the report holds per-slice rows, means per metric, and a figure of the
worst, median and best slices by SSIM.

Intensity scale (stated in every report): ``8bit`` divides translation and target by 255 (the convention of the
reference PNG data set and of published CycleGAN numbers on it), ``robust`` maps each to [0, 1] by its documented
range (the translation by the model's target training range, the target by its own robust range, the same rule as
training). Metrics then use data range 1. ``auto`` picks ``8bit`` for 8-bit PNG targets and ``robust`` otherwise.

Head mask: ``--mask`` if given, else derived from the target: voxels above 1 % of its robust range, holes filled
slice by slice, specks under 16 voxels dropped (:func:`mriganx.intensity.head_mask`).

Slice consistency (volumes only): the through-plane error, the mean over head voxels of
``|(p[z+1] - p[z]) - (t[z+1] - t[z])|`` along the slice axis, on the [0, 1] scale. A 2D model that flickers from
slice to slice has through-plane differences the target does not have; a perfect translation scores 0. It is
reported beside ``mae`` (the same units) because a smooth but wrong volume can score well on it.

Confidence ranking (``confidence=True``): how well the confidence map (:meth:`Translator.confidence_slices`) ranks
the true absolute error over all head voxels: the Spearman correlation between them, and the mean absolute error
of the 10 % of voxels the map trusts most and of the 10 % it trusts least.

Unpaired (``evaluate_unpaired``): the cycle-consistency error (mean ``|G_back(G(x)) - x|`` inside the head, in
[-1, 1] units: how much of the input the translation keeps; 0 is perfect, it does not say the contrast is right)
and the 1-Wasserstein distance between the translated head intensities and those of the target contrast in the
training data (in [-1, 1] units: how far the intensity distribution is from real images of that contrast; it does
not see anatomy).
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import MultiScaleSSIMMetric

from mriganx.config import Direction, IntensityScale
from mriganx.errors import MriganxError
from mriganx.figures import grid, save_figure
from mriganx.frame import to_slices
from mriganx.inference import Translator
from mriganx.intensity import IntensityRange, fit_range, head_mask, normalise
from mriganx.io import ImageKind, find_images, load_image, output_path, to_uint8
from mriganx.metrics import SSIM_SIGMA, SSIM_WINDOW, paired_metrics
from mriganx.slices import network_view

METRICS = ("psnr", "ssim", "ms_ssim", "mae", "psnr_mask", "ssim_mask", "mae_mask")


def slice_key(path: Path) -> str:
    """How slices pair across folders: the slice index after '#' if there is one, else the file name."""
    match = re.search(r"#\s*(\d+)", path.name)
    return f"#{int(match.group(1))}" if match else path.name


def pair_inputs(source: Path, target: Path) -> list[tuple[Path, Path]]:
    if source.is_file() or (source.is_dir() and target.is_dir() and find_images(source) == [source]):
        return [(source, target)]
    sources = {slice_key(p): p for p in find_images(source)}
    targets = {slice_key(p): p for p in find_images(target)}
    shared = sorted(set(sources) & set(targets), key=lambda k: (len(k), k))
    if not shared:
        raise MriganxError(target, f"no file pairs with {source} by name or slice index")
    return [(sources[k], targets[k]) for k in shared]


def ms_ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """MONAI's multi-scale SSIM with as many of the five standard scales as the slice size allows (NaN if none)."""
    weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    smallest = min(prediction.shape)

    def fits(n: int) -> bool:
        # The coarsest scale must still hold a window, and MONAI checks size // (n - 1)^2 > window - 1 besides.
        return smallest // 2 ** (n - 1) >= SSIM_WINDOW and smallest // max(1, n - 1) ** 2 > SSIM_WINDOW - 1

    scales = max((n for n in range(2, len(weights) + 1) if fits(n)), default=0)
    if scales < 2:
        return math.nan
    metric = MultiScaleSSIMMetric(spatial_dims=2, data_range=1.0, kernel_size=SSIM_WINDOW, kernel_sigma=SSIM_SIGMA,
                                  weights=weights[:scales])
    batch = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))[None, None]
    return float(metric(batch(prediction), batch(target)).item())


@dataclass
class Shown:
    """One scored slice, kept for the figure."""

    ssim: float
    name: str
    source: np.ndarray
    prediction: np.ndarray
    truth: np.ndarray
    head_fraction: float
    confidence: np.ndarray | None = None


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (what Spearman's correlation needs).

    >>> average_ranks(np.array([3.0, 1.0, 3.0])).tolist()
    [2.5, 1.0, 2.5]
    """
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equally long samples (NaN if either is constant)."""
    ra, rb = average_ranks(np.ravel(a)), average_ranks(np.ravel(b))
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def through_plane_error(prediction: np.ndarray, target: np.ndarray, masks: np.ndarray) -> float:
    """Mean ``|Δz prediction - Δz target|`` over neighbouring voxel pairs that are both in the head, for slices
    ``(n, rows, cols)`` in slice order (NaN for fewer than two slices)."""
    both = masks[1:] & masks[:-1]
    if not both.any():
        return math.nan
    gap = np.diff(prediction, axis=0) - np.diff(target, axis=0)
    return float(np.abs(gap)[both].mean())


def confidence_ranking(score: np.ndarray, error: np.ndarray, decile: float = 0.1) -> dict[str, float]:
    """How well ``score`` (higher = less trusted) ranks ``error`` over the same voxels."""
    order = np.argsort(score, kind="stable")
    tail = max(1, round(decile * len(order)))
    return {
        "spearman": spearman(score, error),
        "mae_most_confident": float(error[order[:tail]].mean()),
        "mae_least_confident": float(error[order[-tail:]].mean()),
        "mae_all": float(error.mean()),
        "voxels": len(order),
    }


@dataclass
class EvaluationReport:
    direction: Direction
    scale: IntensityScale
    rows: list[dict[str, Any]] = field(default_factory=list)
    figure: Path | None = None
    volumes: list[dict[str, Any]] = field(default_factory=list)  # per image: slice consistency
    confidence: dict[str, float] | None = None

    @property
    def summary(self) -> dict[str, Any]:
        means = {}
        for key in METRICS:
            values = [r[key] for r in self.rows if key in r and not (isinstance(r[key], float) and math.isnan(r[key]))]
            finite = [v for v in values if math.isfinite(v)]
            means[key] = (float(np.mean(finite)) if len(finite) == len(values) else math.inf) if values else math.nan
        consistency = [v["through_plane_error"] for v in self.volumes if not math.isnan(v["through_plane_error"])]
        if consistency:
            means["through_plane_error"] = float(np.mean(consistency))
        summary = {
            "direction": self.direction.value,
            "slices": len(self.rows),
            "intensity_scale": self.scale.value,
            "data_range": 1.0,
            "ssim": f"Gaussian window {SSIM_WINDOW}, sigma {SSIM_SIGMA}, k1 0.01, k2 0.03 (MONAI SSIMMetric)",
            "mask": "given" if any(r.get("mask") == "given" for r in self.rows) else "derived from the target",
            "mean": means,
            "volumes": self.volumes,
        }
        if self.confidence is not None:
            summary["confidence"] = self.confidence
        return summary

    def write(self, out: Path) -> dict[str, Path]:
        out.mkdir(parents=True, exist_ok=True)
        name = self.direction.value
        csv_path, json_path = out / f"{name}_slices.csv", out / f"{name}_summary.json"
        columns = ["pair", "slice", *[m for m in METRICS if any(m in r for r in self.rows)]]
        with open(csv_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
        json_path.write_text(json.dumps(self.summary, indent=1, default=str))
        paths = {"csv": csv_path, "json": json_path}
        if self.figure is not None:
            paths["figure"] = self.figure
        return paths


def _scaled(values: np.ndarray, scale: IntensityScale, rng: IntensityRange) -> np.ndarray:
    if scale is IntensityScale.EIGHT_BIT:
        return values / 255.0
    return np.clip((values - rng.low) / (rng.high - rng.low), 0.0, 1.0)


def evaluate(model: Path | Translator, source: Path, target: Path, direction: Direction = Direction.T1_TO_T2,
             mask: Path | None = None, out: Path | None = None, scale: IntensityScale = IntensityScale.AUTO,
             batch_size: int = 8, confidence: bool = False) -> EvaluationReport:
    """Paired evaluation (see the module docstring); writes CSV, JSON and a figure into ``out`` if given."""
    translator = model if isinstance(model, Translator) else Translator.load(model)
    pairs = pair_inputs(Path(source), Path(target))
    report = EvaluationReport(direction, scale)
    shown: list[Shown] = []
    scores: list[np.ndarray] = []
    errors: list[np.ndarray] = []
    for source_path, target_path in pairs:
        src, tgt = load_image(source_path), load_image(target_path)
        if src.array.shape != tgt.array.shape or not np.allclose(src.affine, tgt.affine, atol=1e-3):
            raise MriganxError(target_path, f"not on the grid of {source_path.name}; paired metrics need one grid")
        chosen = scale
        if chosen is IntensityScale.AUTO:
            chosen = IntensityScale.EIGHT_BIT if tgt.kind is ImageKind.PNG and tgt.array.max() <= 255 else IntensityScale.ROBUST
        report.scale = chosen
        result = translator.translate(src, direction, batch_size, confidence=confidence)
        prediction = to_slices(_scaled(result.array, chosen, result.output_range), tgt.affine)
        target_range = fit_range(tgt.array, translator.data_config.lower_percentile, translator.data_config.upper_percentile)
        truth = to_slices(_scaled(tgt.array, chosen, target_range), tgt.affine)
        inputs = to_slices(src.array, src.affine)
        doubt = to_slices(result.confidence, tgt.affine) if result.confidence is not None else None
        if mask is not None:
            given = load_image(mask)
            if given.array.shape != tgt.array.shape:
                raise MriganxError(mask, f"mask has shape {given.array.shape}, the target {target_path.name} has {tgt.array.shape}; they must share one grid")
            masks = to_slices(given.array > 0, tgt.affine)
        else:
            masks = head_mask(normalise(to_slices(tgt.array, tgt.affine), target_range))
        for index in range(truth.shape[0]):
            if not masks[index].any():
                continue
            row: dict[str, Any] = {"pair": source_path.name, "slice": index, "mask": "given" if mask else "derived"}
            row.update(paired_metrics(prediction[index], truth[index], 1.0, masks[index]))
            row["ms_ssim"] = ms_ssim(prediction[index], truth[index])
            report.rows.append(row)
            shown.append(Shown(row["ssim"], f"{source_path.name}:{index}", inputs[index], prediction[index], truth[index],
                               float(masks[index].mean()), None if doubt is None else doubt[index]))
        error = np.abs(prediction - truth)[masks]
        if truth.shape[0] > 1:
            report.volumes.append({"pair": source_path.name,
                                   "through_plane_error": through_plane_error(prediction, truth, masks),
                                   "mae_mask": float(error.mean()) if error.size else math.nan})
        if doubt is not None:
            scores.append(doubt[masks])
            errors.append(error)
    if scores and sum(len(s) for s in scores):
        report.confidence = confidence_ranking(np.concatenate(scores), np.concatenate(errors))
    if not report.rows:
        raise MriganxError(target, "no slice shows head; nothing to score")
    if out is not None:
        report.figure = _figure(shown, output_path(out, f"{direction.value}_figure", ImageKind.PNG))
        report.write(Path(out))
    return report


def _figure(shown: list[Shown], path: Path) -> Path:
    # Slices that show little head (the skull cap, the neck) score high on background alone: pick among the rest.
    largest = max(s.head_fraction for s in shown)
    ranked = sorted((s for s in shown if s.head_fraction >= 0.3 * largest), key=lambda s: s.ssim)
    picks = {"worst": ranked[0], "median": ranked[len(ranked) // 2], "best": ranked[-1]}
    columns = ["input", "translation", "target", "|error| x2"]
    with_doubt = all(s.confidence is not None for s in picks.values())
    if with_doubt:
        columns.append("doubt x2")
    rows, titles = [], []
    for label, s in picks.items():
        row = [
            to_uint8(normalise(s.source, fit_range(s.source))),
            to_uint8(s.prediction, 0.0, 1.0),
            to_uint8(s.truth, 0.0, 1.0),
            to_uint8(np.abs(s.prediction - s.truth), 0.0, 0.5),  # error shown brighter: white = 0.5 of the range
        ]
        if with_doubt:
            row.append(to_uint8(s.confidence, 0.0, 0.5))  # on the error's scale, so the two can be compared
        rows.append(row)
        titles.append(f"{label}: {s.name}, SSIM {s.ssim:.2f}")
    picture = grid(rows, columns, titles, scale=2 if rows[0][0].shape[0] < 128 else 1)
    return save_figure(picture, path)


def wasserstein_1d(a: np.ndarray, b: np.ndarray, bins: np.ndarray) -> float:
    """1-Wasserstein distance between two histograms on the same bins (the area between their CDFs)."""
    ca = np.cumsum(a) / max(a.sum(), 1e-12)
    cb = np.cumsum(b) / max(b.sum(), 1e-12)
    return float(np.sum(np.abs(ca - cb)[:-1] * np.diff(bins)[:-1]))


def evaluate_unpaired(model: Path | Translator, source: Path, direction: Direction = Direction.T1_TO_T2) -> dict[str, Any]:
    """Cycle error and intensity-distribution distance for images without a paired target."""
    translator = model if isinstance(model, Translator) else Translator.load(model)
    paths = find_images(source) if Path(source).is_dir() else [Path(source)]
    reference = translator.histograms.get(direction.target)
    edges = np.linspace(-1, 1, len(reference) + 1) if reference is not None else np.linspace(-1, 1, 65)
    histogram = np.zeros(len(edges) - 1)
    cycle = []
    for path in paths:
        view = network_view(load_image(path), translator.data_config)
        normalised, masks = torch.from_numpy(view.slices)[:, None], torch.from_numpy(view.masks)[:, None]
        forth = translator.translate_slices(normalised, masks, direction)
        again = translator.translate_slices(forth, masks, direction.reverse)
        cycle.append(float((again - normalised).abs()[masks].mean()))
        histogram += np.histogram(forth[masks].numpy(), bins=edges)[0]
    out: dict[str, Any] = {"direction": direction.value, "images": len(paths), "cycle_error": float(np.mean(cycle))}
    if reference is not None:
        out["intensity_w1"] = wasserstein_1d(histogram, np.asarray(reference, dtype=float), edges)
    return out
