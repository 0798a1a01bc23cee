"""Translate scans into files on disk: the library behind ``mriganx convert``.

Output naming: ``<name>_t2`` (or ``_t1``) as gzipped NIfTI beside the input or inside an output folder (see
:func:`mriganx.io.output_path`); a PNG input also gives an 8-bit ``<name>_t2`` PNG; with ``confidence`` also
``<name>_t2_confidence`` on the same grid (higher = less trustworthy; see
:meth:`mriganx.inference.Translator.confidence_slices`). Every file is written atomically; an
existing output is kept unless ``overwrite``; an input is never overwritten. One scan that fails does not stop the
others: its error is collected and reported.

>>> output_name(Path("dicom") / "sub-01_T1w", Direction.T1_TO_T2)   # a DICOM series folder
'sub-01_T1w_t2'
"""

from __future__ import annotations

import multiprocessing
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mriganx.config import Direction
from mriganx.errors import MriganxError
from mriganx.inference import Translator
from mriganx.io import (
    ImageKind, find_images, image_stem, is_nifti_name, load_image, output_path, save_like, save_png, sibling, to_uint8,
)


def output_name(path: Path, direction: Direction) -> str:
    return f"{image_stem(path)}_{direction.target}"


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files and DICOM series folders stay; other folders give the images inside them."""
    expanded: list[Path] = []
    for path in inputs:
        if not path.exists():
            raise MriganxError(path, "does not exist")
        expanded.extend(find_images(path) if path.is_dir() else [path])
    return expanded


@dataclass
class ConvertReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[MriganxError] = field(default_factory=list)


def plan_outputs(inputs: list[Path], direction: Direction, output: Path | None) -> list[tuple[Path, Path]]:
    """Pair each input with its NIfTI output path. With one input, ``output`` may name the file itself."""
    if output is not None and len(inputs) == 1 and is_nifti_name(output):
        return [(inputs[0], output)]
    plans = []
    for path in inputs:
        folder = output if output is not None else path.parent
        plans.append((path, output_path(folder, output_name(path, direction))))
    return plans


def convert_one(translator: Translator, source: Path, target: Path, direction: Direction, *, batch_size: int = 8,
                overwrite: bool = False, series: str | None = None, confidence: bool = False) -> list[Path]:
    image = load_image(source, series if source.is_dir() else None)
    png_target = sibling(target, "", ImageKind.PNG)
    confidence_target = sibling(target, "_confidence")
    planned = [target, *([png_target] if image.kind is ImageKind.PNG else []), *([confidence_target] if confidence else [])]
    if not overwrite:
        for path in planned:
            if path.exists():
                raise MriganxError(path, "exists; pass --overwrite to replace it")
    result = translator.translate(image, direction, batch_size, confidence=confidence)
    description = f"mriganx {direction.value} synthetic, not a measured image"
    written = [save_like(result.array, image, target, overwrite=overwrite, description=description)]
    if image.kind is ImageKind.PNG:
        # 8 bits hold the translation's own range (the target contrast's training range), never a clipped part of it.
        low, high = result.output_range.low, result.output_range.high
        written.append(save_png(to_uint8(result.array[..., 0], low, high), png_target, overwrite=overwrite, protect=(source,)))
    if result.confidence is not None:
        written.append(save_like(result.confidence, image, confidence_target, overwrite=overwrite,
                                 description=f"mriganx {direction.value} doubt: higher = less trustworthy"))
    return written


_WORKER: dict[str, Any] = {}


def _worker_start(model: Path, device: str, threads: int) -> None:
    # Each worker process loads the model once and keeps it for all the scans it is given.
    torch.set_num_threads(threads)
    _WORKER["translator"] = Translator.load(model, device)


Job = tuple[Path, Path, Direction, dict[str, Any]]  # source, target, direction, convert_one's keyword options


def _attempt(translator: Translator, job: Job) -> list[Path] | MriganxError:
    """One scan; its error is returned, not raised, so the others go on."""
    source, target, direction, options = job
    try:
        return convert_one(translator, source, target, direction, **options)
    except MriganxError as error:
        return error


def _worker_convert(job: Job) -> list[Path] | MriganxError:
    return _attempt(_WORKER["translator"], job)


def convert(
    inputs: list[Path], model: Path, *, direction: Direction = Direction.T1_TO_T2, output: Path | None = None,
    device: str = "auto", batch_size: int = 8, overwrite: bool = False, skip_existing: bool = False,
    progress: bool = True, series: str | None = None, workers: int = 1, confidence: bool = False,
) -> ConvertReport:
    """Translate every input; the Python face of ``mriganx convert``.

    With ``workers > 1`` scans are spread over that many processes, each loading the model once and using an
    equal share of the CPU threads; every scan is translated exactly as in a serial run.
    """
    from tqdm import tqdm

    translator = Translator.load(model, device if workers <= 1 else "cpu")  # a bad model fails before any work
    sources = expand_inputs(inputs)
    report = ConvertReport()
    jobs: list[Job] = []
    options = {"batch_size": batch_size, "overwrite": overwrite, "series": series, "confidence": confidence}
    for source, target in plan_outputs(sources, direction, output):
        if skip_existing and target.exists():
            report.skipped.append(target)
        else:
            jobs.append((source, target, direction, options))
    with tqdm(total=len(jobs), unit="scan", disable=not progress or len(jobs) < 2) as bar, ExitStack() as stack:
        if workers > 1 and len(jobs) > 1:
            threads = max(1, torch.get_num_threads() // workers)
            context = multiprocessing.get_context("spawn")
            pool = stack.enter_context(context.Pool(min(workers, len(jobs)), _worker_start, (model, device, threads)))
            results = pool.imap(_worker_convert, jobs)
        else:
            results = (_attempt(translator, job) for job in jobs)
        for result in results:
            if isinstance(result, MriganxError):
                report.failed.append(result)
            else:
                report.written.extend(result)
            bar.update(1)
    return report
