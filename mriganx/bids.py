"""BIDS datasets in, a BIDS derivative dataset out: the library behind ``mriganx convert BIDS_ROOT``.

**Input.** A BIDS dataset root: a folder holding ``dataset_description.json`` (``--bids`` takes a folder without
one). Every NIfTI image ``sub-*/[ses-*/]anat/*_T1w`` is translated to T2w and every ``*_T2w`` to T1w; nothing else
is read, and nothing is written into the dataset outside ``derivatives/``.

**Output.** A derivative dataset in ``ROOT/derivatives/mriganx/`` (or ``-o DIR``, outside the raw dataset or under
its ``derivatives/``), in the raw dataset's ``sub-*/[ses-*/]anat/`` layout:

- the translation, named by :func:`derivative_stem`: every entity of the source kept, in BIDS order, ``desc-mriganx``
  and the target suffix (``sub-01_ses-1_acq-mprage_T1w`` -> ``sub-01_ses-1_acq-mprage_desc-mriganx_T2w``). A source
  that has a ``desc`` keeps it in front (``desc-preproc`` -> ``desc-preprocMriganx``), so two sources that differ
  only by their desc stay two outputs, and the name still says what it was made from.
- with ``confidence``, the confidence map on the same grid (higher = less trustworthy, arbitrary units) with the
  desc label ``mriganxConfidence`` (``preprocMriganxConfidence``) and the same target suffix: it sits beside the
  translation it belongs to, and a query for ``desc-mriganx`` does not return it.
- a JSON sidecar beside each image (:func:`sidecar`): ``Description``; ``Sources``, the raw image as a BIDS URI
  ``bids:raw:<its path in the raw dataset>``; ``Direction``; ``Model`` (``Name`` and ``WeightsSHA256``, the digest
  of the generators' weights); ``MriganxVersion``; ``ContrastCheck``, how the image met its suffix; and for a
  translation whose map was written, ``ConfidenceMap``, the map's file name.
- ``dataset_description.json`` (:func:`dataset_description`): ``Name``, ``BIDSVersion``, ``DatasetType``
  ``derivative``, ``GeneratedBy`` (mriganx and its version) and ``DatasetLinks`` ``{"raw": <the raw dataset's path
  relative to the derivative>}``, which resolves the ``bids:raw:`` URIs. An existing one is kept (replaced with
  ``overwrite``) if it is mriganx's translation of the same raw dataset; otherwise the output folder is refused.

**The suffix and the image.** The suffix gives the direction; :func:`mriganx.contrast.detect_contrast` reads the
image alone. When it reads the other contrast the file is refused in one line (the others are converted; the CLI
exits with code 2 at the end); when it cannot tell, the suffix decides and the note and ``ContrastCheck`` say so.
Reruns skip a file whose outputs all exist, unless ``overwrite``; one with part of them missing (a deleted
sidecar) is written again whole. A folder laid out as a dataset without its description is refused when
translations would go beside its images (:func:`refuse_writing_into_datasets`). No pybids needed: the few rules of BIDS names
used here are parsed in this module (pybids, in the ``export`` extra, only checks the outputs in the tests).

>>> derivative_stem("sub-01_acq-mprage_ses-1_T1w", Direction.T1_TO_T2)   # entities back in BIDS order
'sub-01_ses-1_acq-mprage_desc-mriganx_T2w'
>>> derivative_stem("sub-01_desc-preproc_T2w", Direction.T2_TO_T1, confidence=True)
'sub-01_desc-preprocMriganxConfidence_T1w'
>>> model = {"Name": "model.pt", "WeightsSHA256": "4d57..."}
>>> card = sidecar(["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"], Direction.T1_TO_T2, model, "T1w by its BIDS suffix",
...                confidence_map="sub-01_desc-mriganxConfidence_T2w.nii.gz")
>>> card["Sources"], card["Direction"], card["ConfidenceMap"]
(['bids:raw:sub-01/anat/sub-01_T1w.nii.gz'], 't1-to-t2', 'sub-01_desc-mriganxConfidence_T2w.nii.gz')
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import mriganx
from mriganx.config import CONTRAST_NAMES, Direction
from mriganx.contrast import detect_contrast
from mriganx.convert import Converted, ConvertReport, convert_one, existing_outputs, may_replace
from mriganx.errors import MriganxError
from mriganx.inference import Translator
from mriganx.io import (
    Image, image_stem, is_nifti_name, load_image, load_json, output_path, require_exists, save_json, sidecar_path,
    written_by_mriganx, written_together,
)
from mriganx.modelfile import resolve

__all__ = [
    "bids_uri", "check_suffix", "convert_bids", "dataset_description", "dataset_root", "derivative_root",
    "derivative_stem", "enclosing_dataset", "find_anatomicals", "is_dataset", "parse_name", "refuse_writing_into_datasets",
    "sidecar",
]

DESCRIPTION_FILE = "dataset_description.json"
PIPELINE = "mriganx"  # the derivative's folder name and its GeneratedBy name
DESC = "mriganx"  # desc label of a translation; a source's own desc goes in front of it, camel-cased
CONFIDENCE = "Confidence"  # appended to the desc label of a confidence map
BIDS_VERSION = "1.9.0"  # BIDS URIs in Sources and DatasetLinks are BIDS 1.9 (1.8 had them as a draft)
RAW = "raw"  # the DatasetLinks name of the raw dataset, as in bids:raw:sub-01/anat/...
SUFFIXES = {d.names[0]: d for d in Direction}  # the suffix an image carries -> the way it is translated
# The order of entities in a BIDS file name (the BIDS schema's rules.entities, as short keys); desc comes last.
ENTITY_ORDER = (
    "sub", "tpl", "ses", "cohort", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc", "stain", "rec",
    "dir", "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi", "space", "split", "recording", "chunk",
    "atlas", "seg", "scale", "res", "den", "label", "desc",
)
_ALPHANUMERIC = re.compile(r"[A-Za-z0-9]+")


def is_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a BIDS dataset root (a folder holding ``dataset_description.json``)."""
    return Path(path).is_dir() and (Path(path) / DESCRIPTION_FILE).is_file()


def dataset_root(inputs: list[Path], bids: bool | None = None) -> Path | None:
    """The BIDS dataset ``mriganx convert`` was given, or ``None`` for plain files and folders.

    ``bids=None`` recognises a dataset by its description file, ``True`` takes the one input as a dataset whatever
    it holds, ``False`` never. A dataset is converted on its own: beside other inputs it is an error.
    """
    if bids is False:
        return None
    roots = [path for path in inputs if is_dataset(path)]
    if bids is None and not roots:
        return None
    if len(inputs) != 1:
        where = roots[0] if roots else None
        raise MriganxError(where, "a BIDS dataset is converted on its own: give its root as the only input "
                                  "(or pass --no-bids to convert folders as plain folders)")
    root = require_exists(inputs[0])
    if not root.is_dir():
        raise MriganxError(root, "is not a folder; --bids takes a BIDS dataset's root folder")
    return root


def enclosing_dataset(path: str | Path) -> Path | None:
    """The raw BIDS dataset ``path`` lies inside (the nearest folder above it holding ``dataset_description.json``,
    unless that says ``DatasetType: derivative``), or ``None``."""
    for folder in Path(path).resolve().parents:
        if is_dataset(folder):
            try:
                kind = load_json(folder / DESCRIPTION_FILE).get("DatasetType", "raw")
            except MriganxError:
                kind = "raw"  # an unreadable description still marks a dataset someone keeps
            return None if kind == "derivative" else folder
    return None


def refuse_writing_into_datasets(inputs: list[Path], output: Path | None) -> None:
    """Translations written beside inputs inside a raw BIDS dataset would make it invalid BIDS (``sub-01_T1w_t2``
    is no BIDS name): refused in one line that says how to get them, unless ``-o`` sends them elsewhere. So is a
    folder laid out as one without its ``dataset_description.json`` (a dataset copied in part, or not yet
    described): its ``anat/`` folders are a dataset's all the same, and ``--bids`` or ``--no-bids`` says which the
    user means."""
    if output is not None:
        return
    for path in inputs:
        root = enclosing_dataset(path)
        if root is not None:
            raise MriganxError(path, f"lies inside the BIDS dataset {root}; a translation beside it would make the "
                                     f"dataset invalid: convert the dataset (mriganx convert {root}) into "
                                     "derivatives/mriganx, or pass -o")
        described = any(is_dataset(folder) for folder in Path(path).resolve().parents)  # a derivative's: not guarded
        laid_out = None if described else next(iter(bids_laid_out(path)), None)
        if laid_out is not None:
            raise MriganxError(laid_out, "lies in a BIDS layout (sub-*/anat/) without dataset_description.json; a "
                                         "translation beside it would put a non-BIDS name into anat/: pass --bids "
                                         "with the dataset's root (derivatives/mriganx), -o DIR, or --no-bids to "
                                         "write beside it all the same")


def bids_laid_out(path: str | Path) -> list[Path]:
    """The T1w and T2w NIfTI images at or under ``path`` that lie as in a BIDS dataset:
    ``sub-<label>/[ses-<label>/]anat/sub-<label>_..._T1w.nii[.gz]`` (or ``_T2w``), whether or not a
    ``dataset_description.json`` says it is one."""
    path = Path(path)
    candidates = path.rglob("sub-*") if path.is_dir() else [path]
    found = []
    for image in candidates:
        where = Path(os.path.abspath(image)).parent  # not resolved: a DataLad file links into .git/annex
        if not (image.name.startswith("sub-") and is_nifti_name(image) and where.name == "anat"
                and _suffix(image) in SUFFIXES):
            continue
        above = where.parent
        if above.name.startswith("ses-"):
            above = above.parent
        if above.name.startswith("sub-"):
            found.append(image)
    return sorted(found)


def parse_name(path: str | Path) -> tuple[dict[str, str], str]:
    """The entities (in the name's order) and the suffix of a BIDS file name.

    >>> parse_name("sub-01_ses-1_T1w.nii.gz")
    ({'sub': '01', 'ses': '1'}, 'T1w')
    """
    *pairs, suffix = image_stem(path).split("_")
    entities: dict[str, str] = {}
    for pair in pairs:
        key, _, label = pair.partition("-")
        if not _ALPHANUMERIC.fullmatch(key) or not _ALPHANUMERIC.fullmatch(label) or key in entities:
            raise MriganxError(path, f"is not a BIDS file name: {pair!r} is not one key-label entity like 'ses-1'")
        entities[key] = label
    if "sub" not in entities or not _ALPHANUMERIC.fullmatch(suffix):
        raise MriganxError(path, "is not a BIDS file name (sub-<label>_..._<suffix>)")
    return entities, suffix


def _rank(key: str) -> float:
    # An entity this list does not know (a newer BIDS) keeps its place among the unknown ones, just before desc.
    return ENTITY_ORDER.index(key) if key in ENTITY_ORDER else len(ENTITY_ORDER) - 1.5


def derivative_stem(source: str | Path, direction: Direction, confidence: bool = False) -> str:
    """The derivative's name for a translation (or its confidence map) of ``source``, without extension (see the
    module docstring)."""
    entities, _ = parse_name(source)
    own = entities.get("desc", "")
    label = f"{own}{DESC[0].upper()}{DESC[1:]}" if own else DESC
    entities["desc"] = label + (CONFIDENCE if confidence else "")
    ordered = sorted(entities.items(), key=lambda item: _rank(item[0]))
    return "_".join([*(f"{key}-{value}" for key, value in ordered), direction.names[1]])


def find_anatomicals(root: str | Path) -> list[Path]:
    """The NIfTI images ``sub-*/[ses-*/]anat/*_T1w`` and ``*_T2w`` of a dataset, sorted; hidden files left out."""
    root = Path(root)
    folders = sorted({*root.glob("sub-*/anat"), *root.glob("sub-*/ses-*/anat")})
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            # A broken link (a DataLad file not fetched) is kept, so that its error names it instead of a silence.
            if path.name.startswith(".") or not (path.is_file() or path.is_symlink()) or not is_nifti_name(path):
                continue
            if _suffix(path) in SUFFIXES:
                found.append(path)
    return found


def _suffix(path: Path) -> str:
    return image_stem(path).rsplit("_", 1)[-1]


def bids_uri(dataset: str, path: Path) -> str:
    """A BIDS URI: ``bids:<dataset>:<path within it>`` (``dataset`` a DatasetLinks name, ``""`` this dataset).

    >>> bids_uri("raw", Path("sub-01") / "anat" / "sub-01_T1w.nii.gz")
    'bids:raw:sub-01/anat/sub-01_T1w.nii.gz'
    """
    return f"bids:{dataset}:{path.as_posix()}"


def _link(root: Path, out: Path) -> str:
    """Where the raw dataset is, seen from the derivative: a relative path, which survives moving both together."""
    try:
        return Path(os.path.relpath(root.resolve(), out.resolve())).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return root.resolve().as_uri()


def dataset_description(root: Path, out: Path) -> dict[str, Any]:
    """The derivative's ``dataset_description.json`` for translations of the dataset ``root`` written to ``out``."""
    raw = root / DESCRIPTION_FILE
    name = load_json(raw).get("Name") if raw.is_file() else None
    return {
        "Name": f"mriganx translations of {name or root.resolve().name}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": PIPELINE,
            "Version": mriganx.__version__,
            "Description": "T1w <-> T2w translation by an unpaired CycleGAN: synthetic images, not measurements",
        }],
        "DatasetLinks": {RAW: _link(root, out)},
    }


def sidecar(sources: list[str], direction: Direction, model: dict[str, str], check: str, *,
            confidence_of: str | None = None, confidence_map: str | None = None) -> dict[str, Any]:
    """The JSON sidecar of a translation, or with ``confidence_of`` (the translation's file name) of its confidence
    map; ``confidence_map`` names the map beside a translation (see the module docstring)."""
    source, target = direction.names
    if confidence_of is None:
        description = f"Synthetic {target} image translated from a {source} image by mriganx; not a measured image"
    else:
        description = (f"mriganx confidence map of {confidence_of}: where the translation is least trustworthy "
                       "(higher = less trustworthy; arbitrary units)")
    card: dict[str, Any] = {
        "Description": description,
        "Sources": sources,
        "Direction": direction.value,
        "Model": model,
        "MriganxVersion": mriganx.__version__,
        "ContrastCheck": check,
    }
    if confidence_map is not None:
        card["ConfidenceMap"] = confidence_map
    return card


def check_suffix(image: Image, suffix: str) -> str:
    """One line on how the image met its BIDS suffix; a one-line refusal when the image shows the other contrast.

    The image alone is read (``read_name=False``): the suffix is the claim being checked, not evidence for it.
    """
    found = detect_contrast(image, read_name=False)
    direction = SUFFIXES[suffix]
    if found.contrast is None:
        return f"{suffix} by its BIDS suffix; the image cannot confirm it ({found.reason}) -> {direction.value}"
    if CONTRAST_NAMES[found.contrast] != suffix:
        raise MriganxError(image.source, f"refused: its BIDS suffix says {suffix} but the image looks "
                                         f"{CONTRAST_NAMES[found.contrast]} ({found.evidence}); fix the name or the image")
    return f"{suffix} by its BIDS suffix, and the image agrees ({found.evidence}) -> {direction.value}"


def derivative_root(root: Path, output: Path | None) -> Path:
    """The derivative dataset's folder: ``ROOT/derivatives/mriganx`` or ``output``, never a raw dataset folder."""
    out = Path(output) if output is not None else root / "derivatives" / PIPELINE
    if is_nifti_name(out):
        raise MriganxError(out, "-o names a file; a BIDS dataset is translated into a folder")
    raw, where = root.resolve(), out.resolve()
    derivatives = raw / "derivatives"
    if where.is_relative_to(raw) and (where == derivatives or not where.is_relative_to(derivatives)):
        raise MriganxError(out, "is inside the raw dataset; its translations go into a folder under derivatives/ "
                                "(the default) or outside it")
    return out


def _write_description(root: Path, out: Path, overwrite: bool) -> None:
    wanted = dataset_description(root, out)
    path = out / DESCRIPTION_FILE
    if not path.exists() and out.is_dir() and any(out.iterdir()):
        raise MriganxError(out, "holds files but no dataset_description.json of mriganx translations; a derivative "
                                "dataset goes into a new or empty folder, or one mriganx wrote: choose another -o")
    if path.exists():
        existing = load_json(path)
        makers = [g.get("Name") for g in existing.get("GeneratedBy", []) if isinstance(g, dict)]
        if PIPELINE not in makers:
            raise MriganxError(path, "describes another dataset, not mriganx translations; choose another -o")
        link = (existing.get("DatasetLinks") or {}).get(RAW)
        if link != wanted["DatasetLinks"][RAW]:
            raise MriganxError(path, f"holds translations of another dataset ({RAW}: {link}); choose another -o")
        if not overwrite:
            return
    save_json(wanted, path, overwrite=overwrite)


def _convert_source(translator: Translator, root: Path, out: Path, source: Path, model: dict[str, str], *,
                    batch_size: int, overwrite: bool, confidence: bool) -> Converted:
    _, suffix = parse_name(source)
    direction = SUFFIXES[suffix]
    folder = out / source.parent.relative_to(root)
    target = output_path(folder, derivative_stem(source, direction))
    confidence_target = output_path(folder, derivative_stem(source, direction, confidence=True)) if confidence else None
    images = [target, *([confidence_target] if confidence_target else [])]
    sidecars = [sidecar_path(path) for path in images]
    # A rerun skips a scan whose outputs are all there; one with a part missing (a deleted sidecar, a map not asked
    # for before) is written again whole, so that the sidecar describes the image beside it.
    existing = existing_outputs([*images, *sidecars], _written_by_mriganx)
    if len(existing) == len(images) + len(sidecars) and not overwrite:
        return Converted(source, direction, f"{suffix} by its BIDS suffix -> {direction.value}", skipped=target)
    replace = may_replace([*images, *sidecars], existing, overwrite)
    # Read once here for the check, and again by convert_one, which owns the write rules; a read costs a fraction
    # of a second beside the translation.
    check = check_suffix(load_image(source), suffix)
    sources = [bids_uri(RAW, source.relative_to(root))]
    if confidence_target is None:
        cards = [sidecar(sources, direction, model, check)]
    else:
        cards = [sidecar(sources, direction, model, check, confidence_map=confidence_target.name),
                 sidecar(sources, direction, model, check, confidence_of=target.name)]
    with written_together():  # images and sidecars appear together or not at all, as in convert_one
        converted = convert_one(translator, source, direction=direction, output=target, single=True,
                                batch_size=batch_size, overwrite=replace, confidence=confidence,
                                confidence_target=confidence_target)
        for card, path in zip(cards, sidecars):
            converted.written.append(save_json(card, path, overwrite=replace))
    converted.note = check + (f"; {', '.join(p.name for p in existing)} of an earlier run without the rest: written "
                              "again whole" if existing and not overwrite else "")
    return converted


def _written_by_mriganx(path: Path) -> bool:
    """An image mriganx wrote (:func:`mriganx.io.written_by_mriganx`), or a sidecar it wrote (:func:`sidecar`)."""
    if path.suffix.lower() != ".json" or path.is_symlink():
        return written_by_mriganx(path)
    try:
        return "MriganxVersion" in load_json(path)
    except MriganxError:
        return False


def convert_bids(root: str | Path, model: Path | str | None = None, *, output: Path | None = None,
                 direction: Direction | None = None, device: str = "auto", batch_size: int = 8,
                 overwrite: bool = False, progress: bool = True, confidence: bool = False,
                 workers: int = 1) -> ConvertReport:
    """Translate a BIDS dataset's T1w and T2w images into a derivative dataset (see the module docstring).

    ``direction`` keeps only the images it starts from (``t1-to-t2``: the T1w images). A file whose name or image
    is wrong is reported in ``failed`` and the others are converted; a bad model, dataset or output folder raises
    before any work. Scans are translated in this one process (``workers`` above 1 is refused, not ignored).
    """
    from tqdm import tqdm

    root = require_exists(root)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise MriganxError(None, f"--batch-size must be a whole number of at least 1, got {batch_size!r}")
    if workers != 1:
        raise MriganxError(root, "--workers: a BIDS dataset is converted in one process; leave --workers out")
    out = derivative_root(root, output)
    sources = [s for s in find_anatomicals(root) if direction is None or SUFFIXES[_suffix(s)] is direction]
    if not sources:
        which = "T1w or T2w" if direction is None else direction.names[0]
        raise MriganxError(root, f"holds no sub-*/[ses-*/]anat/ NIfTI image with the BIDS suffix {which}")
    translator = Translator.load(resolve(model), device)  # a bad model fails before anything is written
    provenance = {"Name": translator.name, "WeightsSHA256": translator.model.weights_sha256()}
    _write_description(root, out, overwrite)
    report = ConvertReport()
    first: dict[str, Path] = {}
    for source in tqdm(sources, unit="scan", disable=not progress or len(sources) < 2):
        try:
            # sub-01_T1w.nii and sub-01_T1w.nii.gz side by side would get one name; the second is refused.
            key = (source.parent / image_stem(source)).as_posix()
            if key in first:
                raise MriganxError(source, f"has the same output name as {first[key].name}; remove one of them")
            first[key] = source
            report.converted.append(_convert_source(translator, root, out, source, provenance, batch_size=batch_size,
                                                    overwrite=overwrite, confidence=confidence))
        except MriganxError as error:
            report.failed.append(error)
    return report
