"""Translate scans into files on disk: the library behind ``mriganx convert``.

Output naming: ``<name>_t2.nii.gz`` (or ``_t1``) beside the input or inside an output folder; a PNG input also gives
``<name>_t2.png``. Every file is written atomically; an existing output is kept unless ``overwrite``; an input is
never overwritten. One scan that fails does not stop the others: its error is collected and reported.

>>> output_name(Path("sub-01_T1w.nii.gz"), Direction.T1_TO_T2)
'sub-01_T1w_t2'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mriganx.config import Direction
from mriganx.errors import MriganxError
from mriganx.data import find_images
from mriganx.inference import Translator
from mriganx.io import ImageKind, image_kind, load_image, save_like, save_png

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def output_name(path: Path, direction: Direction) -> str:
    name = path.name
    for suffix in (*NIFTI_SUFFIXES, ".png", ".dcm", ".ima"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return f"{name}_{direction.target}"


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files and DICOM series folders stay; other folders give the images inside them."""
    expanded: list[Path] = []
    for path in inputs:
        if not path.exists():
            raise MriganxError(path, "does not exist")
        if path.is_dir() and image_kind(path) is not ImageKind.DICOM:
            expanded.extend(find_images(path))
        else:
            expanded.append(path)
    return expanded


@dataclass
class ConvertReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[MriganxError] = field(default_factory=list)


def plan_outputs(inputs: list[Path], direction: Direction, output: Path | None) -> list[tuple[Path, Path]]:
    """Pair each input with its NIfTI output path. With one input, ``output`` may name the file itself."""
    if output is not None and len(inputs) == 1 and output.name.endswith(NIFTI_SUFFIXES):
        return [(inputs[0], output)]
    plans = []
    for path in inputs:
        folder = output if output is not None else path.parent
        plans.append((path, folder / f"{output_name(path, direction)}.nii.gz"))
    return plans


def convert_one(translator: Translator, source: Path, target: Path, direction: Direction, batch_size: int = 8,
                overwrite: bool = False) -> list[Path]:
    image = load_image(source)
    result = translator.translate(image, direction, batch_size)
    png_target = target.with_name(target.name.replace(".nii.gz", ".png").replace(".nii", ".png"))
    if not overwrite:
        for path in (target, png_target) if image.kind is ImageKind.PNG else (target,):
            if path.exists():
                raise MriganxError(path, "exists; pass --overwrite to replace it")
    description = f"mriganx {direction.value} synthetic, not a measured image"
    written = [save_like(result.array, image, target, overwrite=overwrite, description=description)]
    if image.kind is ImageKind.PNG:
        # The 8-bit PNG keeps the target range's own scale, as the reference slices do.
        written.append(save_png(result.array[..., 0], png_target, overwrite=overwrite, protect=(source,)))
    return written


def convert(
    inputs: list[Path], model: Path, direction: Direction = Direction.T1_TO_T2, output: Path | None = None,
    device: str = "auto", batch_size: int = 8, overwrite: bool = False, skip_existing: bool = False,
    progress: bool = True,
) -> ConvertReport:
    """Translate every input; the Python face of ``mriganx convert``."""
    from tqdm import tqdm

    translator = Translator.load(model, device)
    sources = expand_inputs(inputs)
    report = ConvertReport()
    for source, target in tqdm(plan_outputs(sources, direction, output), unit="scan", disable=not progress or len(sources) < 2):
        if skip_existing and target.exists():
            report.skipped.append(target)
            continue
        try:
            report.written.extend(convert_one(translator, source, target, direction, batch_size, overwrite))
        except MriganxError as error:
            report.failed.append(error)
    return report
