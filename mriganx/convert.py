"""Translate scans into files on disk: the library behind ``mriganx convert``.

Output naming: ``<name>_t2`` (or ``_t1``) as gzipped NIfTI beside the input or inside an output folder (see
:func:`mriganx.io.output_path`); a PNG input also gives an 8-bit ``<name>_t2`` PNG; with ``confidence`` also
``<name>_t2_confidence`` on the same grid (higher = less trustworthy; see
:meth:`mriganx.inference.Translator.confidence_slices`). For a DICOM input, ``output_format`` ``dicom`` (or
``both``) writes the translation as a new DICOM series instead of (or beside) the NIfTI: a folder ``<name>_t2_dicom``
holding one file per slice, in the original's study with its slice geometry (:func:`mriganx.dicom.save_dicom_series`);
the confidence map stays NIfTI. Every file (and every DICOM folder) is written atomically, and a scan's outputs
appear together (:func:`mriganx.io.written_together`). An existing output is kept unless ``overwrite``, and even
then only mriganx's own is replaced (:func:`existing_outputs`); a scan with part of its outputs there from an
earlier run is written again whole (:func:`may_replace`). An input is never overwritten, and ``-o`` equal to an
input file or inside an input series folder is refused before any work. A folder's earlier translations are not
inputs (:func:`earlier_outputs`). One scan that fails does not stop the others: its error is collected and
reported.

A BIDS dataset is not converted here: :mod:`mriganx.bids` (one layer up; the CLI dispatches a BIDS root to it,
since this module must not import the one above it) writes a BIDS derivative dataset with BIDS names and sidecars
under ``derivatives/mriganx``, using :func:`convert_one` for each image. Given to :func:`convert` as a plain folder,
a dataset gets the plain names above, beside its images.

>>> output_name(Path("dicom") / "sub-01_T1w", Direction.T1_TO_T2)   # a DICOM series folder
'sub-01_T1w_t2'
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mriganx.config import CONTRAST_NAMES, Direction, OutputFormat
from mriganx.errors import MriganxError
from mriganx.contrast import detect_contrast
from mriganx.dicom import check_series_out, save_dicom_series
from mriganx.inference import Translator
from mriganx.io import (
    DICOM_FOLDER_SUFFIX, Image, ImageKind, find_images, image_kind, image_stem, is_nifti_name, is_translation, is_within,
    load_image, output_path, require_exists, save_like, save_png, sibling, to_uint8, written_by_mriganx, written_together,
)
from mriganx.modelfile import resolve

log = logging.getLogger(__name__)
CONFIDENCE_SUFFIX = "_confidence"
# The ends of the names convert gives its outputs (before the extension): a file so named beside the image it would
# be the translation of is one, whatever its header says.
OUTPUT_ENDINGS = tuple(f"_{d.target}{extra}" for d in Direction for extra in ("", CONFIDENCE_SUFFIX))


def output_name(path: Path, direction: Direction) -> str:
    return f"{image_stem(path)}_{direction.target}"


def describe(direction: Direction) -> str:
    """What an output's header says it is (NIfTI ``descrip``): a synthetic image, never a measured one."""
    return f"mriganx {direction.value} synthetic, not a measured image"


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files and DICOM series folders stay; other folders give the images inside them, less the translations
    mriganx wrote there earlier (:func:`earlier_outputs`): a rerun never translates its own outputs. A translation
    named as an input file is converted like any scan."""
    expanded: list[Path] = []
    for path in inputs:
        require_exists(path)
        if path.is_dir() and not is_translation(path):
            found = find_images(path)
            ours = earlier_outputs(found)
            if ours:
                log.warning("%s: passed over %d translation(s) mriganx wrote earlier (by their headers or names): %s; "
                            "name one as an input to convert it", path, len(ours), ", ".join(p.name for p in ours[:5]))
            expanded.extend(p for p in found if p not in ours)
        else:
            expanded.append(path)
    return expanded


def earlier_outputs(found: list[Path]) -> list[Path]:
    """The images in ``found`` that are mriganx's translations or confidence maps: by what they say of themselves
    (:func:`mriganx.io.is_translation`), or by name: ``X_t2``, ``X_t2_confidence`` or ``X_t2_dicom`` beside an image
    ``X`` is where X's translation goes, so it is taken for one (an older output, or one whose header a tool
    rewrote)."""
    stems = {(p.parent, image_stem(p)) for p in found}

    def named_as_output(path: Path) -> bool:
        stem = image_stem(path)
        if path.is_dir() and stem.endswith(DICOM_FOLDER_SUFFIX):
            stem = stem[: -len(DICOM_FOLDER_SUFFIX)]
        return any(stem.endswith(end) and (path.parent, stem[: -len(end)]) in stems for end in OUTPUT_ENDINGS)

    return [path for path in found if named_as_output(path) or is_translation(path)]


def existing_outputs(planned: list[Path], owned: Callable[[Path], bool] = written_by_mriganx) -> list[Path]:
    """The planned outputs of one scan that exist already. One that mriganx did not write (``owned``: a measured
    ``scan_t2.nii.gz`` at a translation's name, a link, a folder of other files) is refused in one line, with or
    without ``--overwrite``: it is never replaced."""
    existing = [path for path in planned if path.exists() or path.is_symlink()]
    for path in existing:
        if not owned(path):
            what = "a symbolic link" if path.is_symlink() else "not an output mriganx wrote"
            raise MriganxError(path, f"exists and is {what}; --overwrite replaces only mriganx's own outputs: move it "
                                     "or choose another output")
    return existing


def may_replace(planned: list[Path], existing: list[Path], overwrite: bool) -> bool:
    """Whether a scan's writers replace what exists: with ``overwrite``, or when only part of the scan's outputs
    exist (all mriganx's, :func:`existing_outputs`): the rest of an interrupted or narrower earlier run, which the
    rerun writes whole again instead of being blocked by it. All of them existing, without ``overwrite``, is an
    error (the caller may skip instead)."""
    if existing and len(existing) == len(planned) and not overwrite:
        raise MriganxError(existing[0], "exists; pass --overwrite to replace it")
    return overwrite or bool(existing)


def refuse_outputs_inside_inputs(sources: list[Path], output: Path | None) -> None:
    """``-o`` equal to an input file, or inside an input series folder, is refused before any work: outputs there
    would overwrite the scan or become part of the series the next run reads."""
    if output is None:
        return
    for source in sources:
        if is_within(output, source):
            raise MriganxError(output, f"is {'the input' if source.is_file() else 'inside the input series folder'} "
                                       f"{source}; choose an output outside it")


@dataclass
class Converted:
    """One scan: what was written (nothing when skipped), in which direction, and one line saying why."""

    source: Path
    direction: Direction
    note: str
    written: list[Path] = field(default_factory=list)
    skipped: Path | None = None


@dataclass
class ConvertReport:
    converted: list[Converted] = field(default_factory=list)
    failed: list[MriganxError] = field(default_factory=list)

    def lines(self) -> list[tuple[str, bool]]:
        """What ``mriganx convert`` (and a MONAI bundle's run) prints, in order, each with ``True`` for stderr: per
        scan how its direction was chosen, the files written (stdout) or that it was skipped; then the errors."""
        lines: list[tuple[str, bool]] = []
        for scan in self.converted:
            lines += [(f"{scan.source.name}: {scan.note}", True), *((str(path), False) for path in scan.written)]
            if scan.skipped is not None:
                lines.append((f"skipped (exists): {scan.skipped}", True))
        return lines + [(f"error: {error}", True) for error in self.failed]

    @property
    def written(self) -> list[Path]:
        return [path for scan in self.converted for path in scan.written]

    @property
    def skipped(self) -> list[Path]:
        return [scan.skipped for scan in self.converted if scan.skipped is not None]


def target_path(source: Path, direction: Direction, output: Path | None, single: bool = False) -> Path:
    """Where a translation of ``source`` goes: beside it, or inside the folder ``output``; for a single input
    ``output`` may name the NIfTI file itself."""
    if output is not None and single and is_nifti_name(output):
        return output
    return output_path(output if output is not None else source.parent, output_name(source, direction))


def choose_direction(image: Image, direction: Direction | None) -> tuple[Direction, str]:
    """The direction to translate ``image`` in, and one line saying how it was chosen: as asked, or from the image
    itself (:func:`mriganx.contrast.detect_contrast`), refusing an image that is neither T1w nor T2w."""
    if direction is not None:
        return direction, f"{direction.value} (as asked)"
    detection = detect_contrast(image)
    if detection.contrast is None:
        raise MriganxError(image.source, f"cannot tell whether this is T1w or T2w ({detection.reason}); "
                                         "pass --direction t1-to-t2 or --direction t2-to-t1")
    chosen = Direction.T1_TO_T2 if detection.contrast == "t1" else Direction.T2_TO_T1
    return chosen, f"detected {CONTRAST_NAMES[detection.contrast]} ({detection.evidence}) -> {chosen.value}"


def convert_one(translator: Translator, source: Path, *, direction: Direction | None = None, output: Path | None = None,
                single: bool = False, batch_size: int = 8, overwrite: bool = False, skip_existing: bool = False,
                series: str | None = None, confidence: bool = False,
                confidence_target: Path | None = None,
                output_format: OutputFormat | str = OutputFormat.NIFTI) -> Converted:
    """Translate one scan into files (see the module docstring); ``direction=None`` detects it from the image.
    ``confidence_target`` names the confidence map where the ``_confidence`` sibling would not do (BIDS names)."""
    output_format = OutputFormat(output_format)
    if output_format.dicom and image_kind(source) is not ImageKind.DICOM:  # refused before any pixel is read
        raise MriganxError(source, f"--output-format {output_format.value} writes a DICOM series, which needs a DICOM "
                                   "input (a series folder or file); use --output-format nifti")
    image = load_image(source, series if source.is_dir() else None)
    if output_format.dicom:  # an input the series cannot be written for is refused before any translation
        check_series_out(image)
    direction, note = choose_direction(image, direction)
    target = target_path(source, direction, output, single)
    dicom_target = sibling(target, "", ImageKind.DICOM)
    main = [*([target] if output_format.nifti else []), *([dicom_target] if output_format.dicom else [])]
    if skip_existing and all(path.exists() for path in main):
        return Converted(source, direction, note, skipped=main[0])
    png_target = sibling(target, "", ImageKind.PNG)
    confidence_target = confidence_target or sibling(target, CONFIDENCE_SUFFIX)
    planned = [*main, *([png_target] if image.kind is ImageKind.PNG else []),
               *([confidence_target] if confidence else [])]
    existing = existing_outputs(planned)
    replace = may_replace(planned, existing, overwrite)
    if existing and not overwrite:
        note += f"; {', '.join(p.name for p in existing)} of an earlier run without the rest: written again whole"
    result = translator.translate(image, direction, batch_size, confidence=confidence)
    description = describe(direction)
    written = []
    with written_together():  # a scan's outputs appear together or not at all, even after a SIGKILL
        if output_format.nifti:
            written.append(save_like(result.array, image, target, overwrite=replace, description=description))
        if output_format.dicom:
            # Windowed on the target contrast's training range: the span the translation was made to fill.
            written.append(save_dicom_series(result.array, image, dicom_target, overwrite=replace,
                                             description=f"mriganx synthetic {direction.names[1]}",
                                             window=(result.output_range.low, result.output_range.high)))
        if image.kind is ImageKind.PNG:
            # 8 bits hold the translation's own range (the target contrast's training range), never a clipped part.
            low, high = result.output_range.low, result.output_range.high
            pixels = to_uint8(result.array[..., 0], low, high)
            written.append(save_png(pixels, png_target, overwrite=replace, protect=(source,), description=description))
        if result.confidence is not None:
            written.append(save_like(result.confidence, image, confidence_target, overwrite=replace,
                                     description=f"mriganx {direction.value} doubt: higher = less trustworthy"))
    return Converted(source, direction, note, written)


def _name_clashes(sources: list[Path], output: Path | None) -> dict[Path, Path | None]:
    """Each source, with the first other source whose translation would get the same name (a NIfTI file and its
    gzipped copy in one folder), or ``None``. Caught before any work, so neither silently replaces the other."""
    first: dict[tuple[Path, str], Path] = {}
    clashes: dict[Path, Path | None] = {}
    for source in sources:
        key = ((output or source.parent).resolve(), image_stem(source))
        clashes[source] = first.get(key)
        first.setdefault(key, source)
    return clashes


_WORKER: dict[str, Any] = {}


def _worker_start(model: Path, device: str, threads: int) -> None:
    # Each worker process loads the model once and keeps it for all the scans it is given.
    torch.set_num_threads(threads)
    _WORKER["translator"] = Translator.load(model, device)


Job = tuple[Path, dict[str, Any]]  # a source and convert_one's keyword options


def _attempt(translator: Translator, job: Job) -> Converted | MriganxError:
    """One scan; its error is returned, not raised, so the others go on."""
    source, options = job
    try:
        return convert_one(translator, source, **options)
    except MriganxError as error:
        return error


def _worker_convert(job: Job) -> Converted | MriganxError:
    return _attempt(_WORKER["translator"], job)


def _slice_bar(stack: ExitStack, name: str) -> Callable[[int], None]:
    """A slice progress bar that appears with the first translated batch, closed with ``stack``: a scan refused
    before any slice (its direction undecided, its output in the way) leaves no empty bar above its error line."""
    from tqdm import tqdm

    bar: list[tqdm] = []

    def update(count: int) -> None:
        if not bar:
            bar.append(stack.enter_context(tqdm(unit="slice", desc=name, leave=False)))
        bar[0].update(count)

    return update


def convert(
    inputs: list[Path], model: Path | str | Translator | None = None, *, direction: Direction | None = None,
    output: Path | None = None, device: str = "auto", batch_size: int = 8, overwrite: bool = False,
    skip_existing: bool = False, progress: bool = True, series: str | None = None, workers: int = 1,
    confidence: bool = False, output_format: OutputFormat | str = OutputFormat.NIFTI,
) -> ConvertReport:
    """Translate every input; the Python face of ``mriganx convert``.

    ``model=None`` uses the shipped default model (a :class:`~mriganx.inference.Translator` is used as it is: a
    MONAI bundle's network, :mod:`mriganx.bundle`); ``direction=None`` detects each scan's contrast and translates
    it into the other; ``output_format`` is ``nifti``, ``dicom`` or ``both`` (see the module docstring). With
    ``workers > 1`` scans are spread over that many processes, each loading the model once and using an equal
    share of the CPU threads; every scan is translated exactly as in a serial run.
    """
    from tqdm import tqdm

    for name, value in (("--batch-size", batch_size), ("--workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MriganxError(None, f"{name} must be a whole number of at least 1, got {value!r}")
    if output_format not in tuple(f.value for f in OutputFormat):  # a str Enum equals its value, but hashes apart
        raise MriganxError(None, f"--output-format must be one of nifti, dicom, both, got {output_format!r}")
    if overwrite and skip_existing:
        raise MriganxError(None, "--overwrite replaces existing outputs and --skip-existing keeps them; pass one of them")
    direction = None if direction is None else Direction(direction)  # a library caller's "t1-to-t2" too
    if isinstance(model, Translator):  # already loaded: only this process has it
        if workers > 1:
            raise MriganxError(None, "--workers needs a model file for each worker to load, not a loaded translator")
        translator = model
    else:
        model = resolve(model)
        translator = Translator.load(model, device if workers <= 1 else "cpu")  # a bad model fails before any work
    sources = expand_inputs(inputs)
    refuse_outputs_inside_inputs(sources, output)
    report = ConvertReport()
    options = {"direction": direction, "output": output, "single": len(sources) == 1, "batch_size": batch_size,
               "overwrite": overwrite, "skip_existing": skip_existing, "series": series, "confidence": confidence,
               "output_format": OutputFormat(output_format)}
    jobs: list[Job] = []
    for source, clash in _name_clashes(sources, output).items():
        if clash is None:
            jobs.append((source, options))
        else:
            report.failed.append(MriganxError(source, f"has the same output name as {clash.name} in one folder; convert "
                                                      "one of them with -o into another folder"))
    with tqdm(total=len(jobs), unit="scan", disable=not progress or len(jobs) < 2) as bar, ExitStack() as stack:
        if workers > 1 and len(jobs) > 1:
            threads = max(1, torch.get_num_threads() // workers)
            context = multiprocessing.get_context("spawn")
            pool = stack.enter_context(context.Pool(min(workers, len(jobs)), _worker_start, (model, device, threads)))
            results = pool.imap(_worker_convert, jobs)
        else:
            if progress and len(jobs) == 1:  # one scan: show its slices going through the network instead
                translator.on_batch = _slice_bar(stack, jobs[0][0].name)
            results = (_attempt(translator, job) for job in jobs)
        for result in results:
            if isinstance(result, MriganxError):
                report.failed.append(result)
            else:
                report.converted.append(result)
            bar.update(1)
    return report
