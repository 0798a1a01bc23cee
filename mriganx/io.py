"""Reading and writing images: the only module that knows file formats and file names. The DICOM series itself
(reading one onto a regular grid, writing a translation back as a new series) is :mod:`mriganx.dicom`, to which
:func:`load_image` and :func:`image_kind` hand DICOM paths.

Metadata contract (what every reader returns and every writer relies on)
-----------------------------------------------------------------------
``load_image(path)`` returns an :class:`Image` with

- ``array``: ``float32``, always 3D ``(i, j, k)`` in the voxel order of the file. A 2D slice (PNG, 2D NIfTI, single
  DICOM image) has ``k == 1``. Intensities are the stored values after the file's own rescaling (NIfTI
  ``scl_slope/scl_inter``, DICOM ``RescaleSlope/Intercept``). They are finite: NaN or Inf is refused.
- ``affine``: 4x4 ``float64`` mapping voxel indices ``(i, j, k, 1)`` to world millimetres in RAS+ (x to the patient's
  Right, y Anterior, z Superior), the convention of NIfTI and nibabel. DICOM's LPS is converted once, when it is
  read (:mod:`mriganx.dicom`). For a PNG, which has no geometry, the affine is a nominal 1 mm grid already in the
  slice frame (see :mod:`mriganx.frame`): rows run anterior -> posterior, columns run from the patient's right to left.
- ``header``: for NIfTI, the file's own header (qform/sform matrices and codes, pixdim, units, ...), so that a writer
  can give the output exactly the input's geometry; ``None`` for DICOM and PNG.
- ``kind``: which reader produced it; ``source``: the path it came from; ``disk_shape``: the array shape in the file
  (so that a 2D input is written back 2D); ``files``: for DICOM, the files read (the DICOM writer's slice headers).

``save_like(array, like, path)`` writes ``array`` (same shape as ``like.array``) as NIfTI on ``like``'s grid: for a
NIfTI input the header is copied (same affine, qform/sform and codes, pixdim, units) with data float32, scl_slope 1
and scl_inter 0; for DICOM and PNG inputs both qform and sform hold ``like.affine`` with code 1 (scanner).
A DICOM input's translation can also be written as a new DICOM series (:func:`mriganx.dicom.save_dicom_series`).
Every writer writes to a temporary file (or folder, :func:`atomic_folder`) in the destination folder and renames it,
so an output appears only complete; it refuses to overwrite its source image and, unless asked, any existing file.
Outputs written inside :func:`written_together` (one scan's translation, series, map and sidecars) appear together.
What mriganx writes says so (NIfTI ``descrip`` and PNG ``Description`` starting with :data:`OWN_MARK`, DICOM
Manufacturer): :func:`written_by_mriganx` tells the callers which existing outputs ``--overwrite`` may replace, and
:func:`is_translation` which images a folder conversion passes over.

>>> import numpy as np, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> nib_img = __import__("nibabel").Nifti1Image(np.ones((4, 5, 6), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
>>> __import__("nibabel").save(nib_img, folder / "a.nii.gz")
>>> img = load_image(folder / "a.nii.gz")
>>> img.array.shape, float(img.affine[0, 0]), img.kind.value
((4, 5, 6), 2.0, 'nifti')
>>> out = save_like(img.array * 2, img, folder / "b.nii.gz")
>>> float(load_image(out).array.max())
2.0
"""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import json
import logging
import os
import shutil
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image as PILImage

from mriganx.config import Direction
from mriganx.errors import MriganxError

NIFTI_SUFFIXES = (".nii.gz", ".nii")  # longest first, so that stripping a suffix takes all of it
PNG_SUFFIXES = (".png",)
DICOM_SUFFIXES = (".dcm", ".ima", "")
DICOM_FOLDER_SUFFIX = "_dicom"  # a DICOM series mriganx writes is a folder, one file per slice
# What every image mriganx writes says first (NIfTI descrip, PNG Description text, DICOM Manufacturer): how an output
# is recognised as the tool's own, the only kind --overwrite may replace.
OWN_MARK = "mriganx"
# How a translation or its confidence map describes itself (convert.describe): never taken as an input again.
TRANSLATION_MARKS = tuple(f"{OWN_MARK} {direction.value} " for direction in Direction)
log = logging.getLogger(__name__)


class ImageKind(str, Enum):
    NIFTI = "nifti"
    DICOM = "dicom"
    PNG = "png"


@dataclass
class Image:
    """An image with its geometry. See the module docstring for the contract."""

    array: np.ndarray
    affine: np.ndarray
    kind: ImageKind
    source: Path
    header: nib.Nifti1Header | None = None
    disk_shape: tuple[int, ...] = ()
    files: tuple[Path, ...] = ()  # DICOM: the files read (one per slice, or one multi-frame file)


def image_kind(path: Path) -> ImageKind | None:
    """What reader a path needs, or ``None`` if it is not an image this tool reads."""
    # Imported here, not at the top: mriganx.dicom imports Image, ImageKind and the atomic writers from this module,
    # so a module-level import either way round would be a cycle. io uses it only to dispatch (here and load_image).
    from mriganx.dicom import _is_dicom

    name = path.name.lower()
    if path.is_dir():
        return ImageKind.DICOM if any(_is_dicom(p) for p in sorted(path.iterdir())[:50] if p.is_file()) else None
    if is_nifti_name(path):
        return ImageKind.NIFTI
    if name.endswith(PNG_SUFFIXES):
        return ImageKind.PNG
    if _is_dicom(path):
        return ImageKind.DICOM
    return None


def is_nifti_name(path: str | Path) -> bool:
    """Whether a file name says NIfTI (``.nii`` or ``.nii.gz``), whatever the case."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def image_stem(path: str | Path) -> str:
    """A file name without its image extension: ``sub-01_T1w.nii.gz`` -> ``sub-01_T1w``, ``1-055.dcm`` -> ``1-055``.

    >>> image_stem("sub-01_T1w.nii.gz"), image_stem("slice.PNG"), image_stem("series_folder")
    ('sub-01_T1w', 'slice', 'series_folder')
    """
    name = Path(path).name
    for suffix in (*NIFTI_SUFFIXES, *PNG_SUFFIXES, *(s for s in DICOM_SUFFIXES if s)):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def output_path(folder: str | Path, stem: str, kind: ImageKind = ImageKind.NIFTI) -> Path:
    """``folder/stem`` with the extension mriganx writes for ``kind``: gzipped NIfTI for volumes, PNG for slices and
    figures, and for a DICOM series a folder ``stem_dicom`` holding one file per slice
    (:func:`mriganx.dicom.save_dicom_series`).

    >>> output_path("out", "scan_t2").name, output_path("out", "figure", ImageKind.PNG).name
    ('scan_t2.nii.gz', 'figure.png')
    >>> output_path("out", "scan_t2", ImageKind.DICOM).name
    'scan_t2_dicom'
    """
    extensions = {ImageKind.NIFTI: NIFTI_SUFFIXES[0], ImageKind.PNG: PNG_SUFFIXES[0], ImageKind.DICOM: DICOM_FOLDER_SUFFIX}
    extension = extensions[kind]
    return Path(folder) / f"{stem}{extension}"


def sibling(path: str | Path, suffix: str, kind: ImageKind = ImageKind.NIFTI) -> Path:
    """A file beside ``path`` whose stem carries ``suffix``: ``x_t2.nii.gz`` -> ``x_t2_confidence.nii.gz``."""
    path = Path(path)
    return output_path(path.parent, f"{image_stem(path)}{suffix}", kind)


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of an image (BIDS): the same stem with ``.json``.

    >>> sidecar_path("anat/sub-01_desc-mriganx_T2w.nii.gz").name
    'sub-01_desc-mriganx_T2w.json'
    """
    path = Path(path)
    return path.parent / f"{image_stem(path)}.json"


def save_json(data: dict, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``data`` as indented UTF-8 JSON, atomically (:func:`atomic_output`), keys in the given order."""
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    with atomic_output(path, overwrite) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def load_json(path: str | Path) -> dict:
    """A JSON object from a file (a BIDS description or sidecar); anything else is a one-line error."""
    path = require_exists(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MriganxError(path, f"cannot read JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MriganxError(path, f"holds a JSON {type(data).__name__}, not an object")
    return data


def find_images(folder: str | Path) -> list[Path]:
    """Image paths in a folder, sorted: NIfTI and PNG files, and DICOM series (a folder holding DICOM files).

    Files that are not images (notes, JSON side-cars) are skipped with a warning; hidden files (dot names, such as
    the part files of an interrupted write) are passed over in silence.
    """
    folder = require_exists(folder)
    if not folder.is_dir():
        raise MriganxError(folder, "is not a folder")
    found: list[Path] = []
    skipped: list[str] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        kind = image_kind(entry)
        if kind is ImageKind.DICOM and entry.is_file():
            if folder not in found:  # DICOM files side by side form series: the folder is read as a whole
                found.append(folder)
        elif kind is not None:
            found.append(entry)
        elif entry.is_dir():
            try:
                found.extend(find_images(entry))
            except MriganxError:  # a sub-folder without images (even one named like an image) is not an error
                skipped.append(f"{entry.name}/")
        else:
            skipped.append(entry.name)
    if skipped:
        log.warning("%s: skipped %d non-image file(s): %s", folder, len(skipped), ", ".join(skipped[:5]))
    if not found:
        raise MriganxError(folder, "holds no NIfTI, DICOM or PNG images")
    return found


def require_exists(path: str | Path) -> Path:
    """``path`` if it exists; else a one-line error that tells a missing file from a broken link or a link loop."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise MriganxError(path, "is a broken symbolic link or a link loop")
        raise MriganxError(path, "does not exist")
    return path


def own_description(path: str | Path) -> str:
    """What an image file says of where it came from: a NIfTI's ``descrip``, a PNG's ``Description`` text; ``""``
    for anything else, or for a file that cannot be read. Only the header is read."""
    path = Path(path)
    try:
        if is_nifti_name(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                raw = np.asarray(nib.load(path).header["descrip"]).item()
            return raw.split(b"\0", 1)[0].decode("latin-1") if isinstance(raw, bytes) else str(raw)
        if path.name.lower().endswith(PNG_SUFFIXES):
            with PILImage.open(path) as pil:
                return str(pil.info.get("Description", ""))
    except (OSError, EOFError, ValueError, SyntaxError, zlib.error, nib.filebasedimages.ImageFileError):
        pass
    return ""


def written_by_mriganx(path: str | Path) -> bool:
    """Whether ``path`` is recognisably an output of mriganx, the only thing ``--overwrite`` may replace: a NIfTI or
    PNG that says so (:data:`OWN_MARK`), or a DICOM series mriganx wrote (:func:`mriganx.dicom.written_series`). A
    symbolic link is never one: mriganx writes none, and replacing it would leave its target's owner guessing."""
    from mriganx.dicom import written_series  # not at the top: mriganx.dicom imports this module (see image_kind)

    path = Path(path)
    if path.is_symlink():
        return False
    if path.is_dir():
        return written_series(path)
    return own_description(path).startswith(OWN_MARK)


def is_translation(path: str | Path) -> bool:
    """Whether ``path`` is a translation or confidence map mriganx wrote, by what it says of itself (a phantom from
    ``mriganx synth`` also says mriganx, but is an input like any scan)."""
    from mriganx.dicom import written_series

    path = Path(path)
    return written_series(path) if path.is_dir() else own_description(path).startswith(TRANSLATION_MARKS)


def load_image(path: str | Path, series: str | None = None) -> Image:
    """Read a NIfTI file, a DICOM file or series folder, or an 8-bit PNG slice (see the module docstring)."""
    from mriganx.dicom import _load_dicom  # not at the top: mriganx.dicom imports this module (see image_kind)

    path = require_exists(path)
    kind = image_kind(path)
    if kind is None:
        what = "folder holds no DICOM files" if path.is_dir() else "not a NIfTI, DICOM or PNG file"
        raise MriganxError(path, what)
    reader = {ImageKind.NIFTI: _load_nifti, ImageKind.PNG: _load_png, ImageKind.DICOM: _load_dicom}[kind]
    image = reader(path, series) if kind is ImageKind.DICOM else reader(path)
    _check(image)
    return image


def _check(image: Image) -> None:
    if not np.all(np.isfinite(image.array)):
        bad = int((~np.isfinite(image.array)).sum())
        raise MriganxError(image.source, f"{bad} voxels are NaN or Inf; fix or mask them before translating")
    linear = image.affine[:3, :3]
    if not np.all(np.isfinite(image.affine)) or abs(np.linalg.det(linear)) < 1e-8:
        raise MriganxError(image.source, "the voxel-to-world affine is singular; the file's geometry is broken")
    axes = linear / np.linalg.norm(linear, axis=0)
    if np.abs(axes.T @ axes - np.eye(3)).max() > 1e-3:
        # ITK (3D Slicer, ITK-SNAP) cannot represent sheared grids and would show the output elsewhere.
        raise MriganxError(image.source, "the voxel axes are not orthogonal (sheared affine); resample it to an orthogonal grid first")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))


@contextlib.contextmanager
def _nibabel_messages(path: Path) -> Iterator[None]:
    """Re-log nibabel's header complaints (its own logger prints them bare, e.g. "pixdim[1,2,3] should be non-zero")
    and Python warnings from the read, each with the file they are about."""
    nib_log = logging.getLogger("nibabel.global")
    collect, saved = _Collect(), (nib_log.handlers[:], nib_log.propagate)
    nib_log.handlers, nib_log.propagate = [collect], False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        nib_log.handlers, nib_log.propagate = saved
        for message in dict.fromkeys([*collect.messages, *(" ".join(str(w.message).split()) for w in caught)]):
            log.warning("%s: %s", path, message)


def _stored_bytes(path: Path) -> float:
    """How many bytes of image data a file can hold: its size, or for gzip the uncompressed size its trailer records
    (a brain image compresses more than tenfold, so the compressed size says little). The trailer holds the size
    modulo 4 GiB; deflate compresses at most about 1032:1, so it is exact for files under 4 MB, and above that the
    ratio itself is the bound."""
    size = path.stat().st_size
    if not path.name.lower().endswith(".gz"):
        return float(size)
    if size < 18 or size * 1032 >= 2**32:
        return float(size * 1032)
    with open(path, "rb") as handle:
        handle.seek(-4, os.SEEK_END)
        return float(int.from_bytes(handle.read(4), "little"))


def _check_nifti_header(path: Path, img: nib.Nifti1Image) -> None:
    """Refuse, before any voxel is read, what is not one real-valued image or what the file cannot hold."""
    header = img.header
    dtype = header.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "V":
        raise MriganxError(path, f"voxels are colour or compound ({dtype}); an MR magnitude image has one value per voxel")
    if dtype.kind == "c":
        raise MriganxError(path, "voxels are complex-valued; take the magnitude (e.g. fslcomplex -realabs) first")
    shape = header.get_data_shape()
    needed = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize + int(header.get_data_offset())
    available = _stored_bytes(path)
    if needed > available:
        raise MriganxError(path, f"header declares {'x'.join(map(str, shape))} voxels ({needed / 1e6:.1f} MB) but the "
                                 f"file holds {available / 1e6:.1f} MB; it is truncated or its header is wrong")


def _load_nifti(path: Path) -> Image:
    # nibabel rather than MONAI's NibabelReader: we need the header object itself (qform/sform codes, units) to write
    # the output on the input's grid, and NibabelReader flattens it into a dict.
    try:
        with _nibabel_messages(path):
            img = nib.load(path)
            if isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
                _check_nifti_header(path, img)
                img.affine  # noqa: B018 - nibabel checks pixdim here, and its messages should name this file
            data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise MriganxError(path, f"cannot read NIfTI data, the file is corrupt or truncated ({exc})") from None
    except (nib.filebasedimages.ImageFileError, ValueError) as exc:
        raise MriganxError(path, f"not a valid NIfTI file ({exc})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise MriganxError(path, f"expected NIfTI, nibabel read it as {type(img).__name__}")
    shape = data.shape
    if data.ndim == 4 and shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise MriganxError(path, f"image has shape {shape}; a 2D slice or a 3D volume is needed (4D series: split it)")
    return Image(
        array=np.asarray(data, dtype=np.float32),
        affine=img.affine.astype(np.float64),
        kind=ImageKind.NIFTI,
        source=path,
        header=img.header.copy(),
        disk_shape=tuple(shape),
    )


def _load_png(path: Path) -> Image:
    try:
        with PILImage.open(path) as pil:
            pil.load()
            if pil.mode not in ("L", "I;16", "I", "F"):
                pil = pil.convert("L")
            pixels = np.asarray(pil, dtype=np.float32)
    except (OSError, SyntaxError) as exc:
        raise MriganxError(path, f"cannot read PNG ({exc})") from None
    # Rows run anterior -> posterior and columns from the patient's right to left (the slice frame), 1 mm nominal.
    affine = np.array([[0.0, -1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    return Image(pixels[..., None], affine, ImageKind.PNG, path, None, pixels.shape)


def _umask() -> int:
    # The umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _part_prefix(path: Path) -> str:
    return f".{path.name}.part-"


def _remove_stale_parts(path: Path) -> None:
    """Delete part files of ``path`` left by a writer that was killed outright (SIGKILL, power loss): their names
    carry the writer's process id, and a part whose writer no longer runs can never be finished."""
    for part in path.parent.glob(f"{_part_prefix(path)}*"):
        try:
            pid = int(part.name[len(_part_prefix(path)) :].split(".", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            if part.is_dir() and not part.is_symlink():
                shutil.rmtree(part, ignore_errors=True)
            else:
                part.unlink(missing_ok=True)
        except (ValueError, PermissionError, OSError):
            continue  # not ours, or a live writer of another user


def normal_path(path: str | Path) -> Path:
    """``path`` absolute, with ``.`` and ``..`` taken out and the links above it resolved, its last name kept as
    written (a link there stays a link): ``-o .``, ``-o ..`` and ``out/`` name the folder they mean, so that its part
    files go beside it, not into it or into the current folder."""
    absolute = Path(os.path.abspath(path))
    return absolute.parent.resolve() / absolute.name if absolute.name else absolute


def is_within(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it, links followed on both sides (one place reached by two
    spellings, ``a/../b`` or a link, is one place)."""
    inner, outer = Path(path).resolve(), Path(folder).resolve()
    return inner == outer or outer in inner.parents


# One scan's outputs, written inside written_together(): the final renames wait for the end of the block.
_Commit = Callable[[], "Callable[[], None] | None"]  # moves an output into place; returns how to take a new one back
_PENDING: contextvars.ContextVar[list[tuple[_Commit, Callable[[], None]]] | None] = contextvars.ContextVar(
    "mriganx_pending_outputs", default=None)


@contextlib.contextmanager
def written_together() -> Iterator[None]:
    """Outputs written inside the block (:func:`atomic_output`, :func:`atomic_folder`) appear together or not at all.

    Each writes its part file (or folder) as usual, but its final rename waits for the end of the block: an error
    (or SIGTERM) in the block leaves none of them, and a SIGKILL leaves only part files, which the next write removes,
    never a translation without its DICOM series or its sidecar that would block or confuse a rerun. A rename that
    fails at the end takes back the outputs the block had newly placed. Inside an open block, a block joins it.
    """
    if _PENDING.get() is not None:
        yield
        return
    pending: list[tuple[_Commit, Callable[[], None]]] = []
    token = _PENDING.set(pending)
    placed: list[Callable[[], None]] = []
    try:
        yield
        for commit, _ in pending:
            take_back = commit()
            if take_back is not None:
                placed.append(take_back)
    except BaseException:
        for take_back in reversed(placed):
            take_back()
        raise
    finally:
        _PENDING.reset(token)
        for _, discard in pending:
            discard()


def _finish(commit: _Commit, discard: Callable[[], None]) -> None:
    pending = _PENDING.get()
    if pending is not None:
        pending.append((commit, discard))
        return
    try:
        commit()
    finally:
        discard()


@contextlib.contextmanager
def atomic_output(path: str | Path, overwrite: bool = False, protect: tuple[Path, ...] = ()) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block finishes.

    The one way mriganx writes a file (images, figures, checkpoints, models), so that every output appears complete
    or not at all. The temporary name keeps the suffixes (``.nii.gz`` means gzip to nibabel) and the writer's
    process id; part files of dead writers are removed. The file gets the permissions the user's umask gives a new
    file (0644 under umask 022), not ``mkstemp``'s private 0600. Without ``overwrite`` the final step is a hard
    link, which fails if the name appeared meanwhile (another process, or two inputs with one output name), so an
    existing file is never replaced silently. Inside :func:`written_together` the final step waits for its end.
    """
    path = Path(path)
    place = normal_path(path)
    if any(place.resolve() == Path(p).resolve() for p in protect):
        raise MriganxError(path, "refusing to overwrite an input file; choose another output name")
    if (place.exists() or place.is_symlink()) and not overwrite:
        raise MriganxError(path, "exists; pass --overwrite to replace it")
    try:
        place.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(place)
        suffix = next((s for s in NIFTI_SUFFIXES if place.name.lower().endswith(s)), place.suffix)
        handle, name = tempfile.mkstemp(prefix=f"{_part_prefix(place)}{os.getpid()}.", suffix=suffix, dir=place.parent)
        os.close(handle)
        os.chmod(name, 0o666 & ~_umask())
    except OSError as exc:
        raise MriganxError(place.parent, f"cannot write here ({exc.strerror or exc})") from None
    temporary = Path(name)

    def commit() -> Callable[[], None] | None:
        try:
            if overwrite:
                os.replace(temporary, place)
                return None
            _move_no_clobber(temporary, place)
            return lambda: place.unlink(missing_ok=True)
        except FileExistsError:
            raise MriganxError(path, "appeared while it was being written (another process, or two inputs with one "
                                     "output name); nothing was replaced") from None
        except OSError as exc:
            raise MriganxError(path, f"writing failed, nothing was written ({exc.strerror or exc})") from None

    def discard() -> None:
        temporary.unlink(missing_ok=True)

    with _guarded(path, temporary, commit, discard) as written:
        yield written


@contextlib.contextmanager
def atomic_folder(path: str | Path, overwrite: bool = False, protect: tuple[Path, ...] = ()) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it onto ``path`` only if the block finishes: a folder of
    outputs (a DICOM series, an exported model) appears whole or not at all, as :func:`atomic_output` does for one
    file. The folder gets the umask's permissions; part folders of dead writers are removed. With ``overwrite`` an
    existing folder is replaced only after the new one is complete (whether it may be replaced at all is the
    caller's rule: its own earlier output only); without it, an existing one is an error. A protected path (an
    input), a folder holding one, and the current folder or one holding it are never replaced.
    """
    path = Path(path)
    place = normal_path(path)
    inside = [p for p in protect if is_within(p, place)]
    if inside:
        raise MriganxError(path, f"holds the input {inside[0]}; choose another output folder")
    exists = place.exists() or place.is_symlink()
    if exists and not overwrite:
        raise MriganxError(path, "exists; pass --overwrite to replace it")
    if exists and not place.is_dir():
        raise MriganxError(path, "exists and is not a folder")
    if exists and is_within(Path.cwd(), place):
        raise MriganxError(path, "is the current folder or holds it; replacing it would pull the folder from under "
                                 "this shell: run from elsewhere, or name another folder")
    parent = place.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(place)
        temporary = Path(tempfile.mkdtemp(prefix=f"{_part_prefix(place)}{os.getpid()}.", dir=parent))
        os.chmod(temporary, 0o777 & ~_umask())
    except OSError as exc:
        raise MriganxError(parent, f"cannot write here ({exc.strerror or exc})") from None

    def commit() -> Callable[[], None] | None:
        try:
            if not (place.exists() or place.is_symlink()):
                os.rename(temporary, place)
                return lambda: shutil.rmtree(place, ignore_errors=True)
            if not overwrite:
                raise MriganxError(path, "appeared while it was being written; nothing was replaced")
            _swap_folder(temporary, place)
            return None
        except OSError as exc:
            raise MriganxError(path, f"writing failed, nothing was written ({exc.strerror or exc})") from None

    def discard() -> None:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)

    with _guarded(path, temporary, commit, discard) as written:
        yield written


@contextlib.contextmanager
def _guarded(path: Path, temporary: Path, commit: _Commit, discard: Callable[[], None]) -> Iterator[Path]:
    """The body of both atomic writers: hand out the temporary, discard it if the caller fails (an OS error becomes
    the one-line error), commit it if not."""
    try:
        yield temporary
    except OSError as exc:
        discard()
        raise MriganxError(path, f"writing failed, nothing was written ({exc.strerror or exc})") from None
    except BaseException:
        discard()
        raise
    _finish(commit, discard)


def _swap_folder(new: Path, place: Path) -> None:
    """Put the folder ``new`` where the folder ``place`` is, in two renames; if the second fails the old folder goes
    back, so ``place`` always holds one whole folder; the old one is deleted only once the new one is in place."""
    old = Path(tempfile.mkdtemp(prefix=f"{_part_prefix(place)}{os.getpid()}.old.", dir=place.parent))
    try:
        os.replace(place, old / place.name)
    except OSError:
        old.rmdir()
        raise
    try:
        os.replace(new, place)
    except OSError:
        os.replace(old / place.name, place)
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)


def _move_no_clobber(temporary: Path, path: Path) -> None:
    try:
        os.link(temporary, path)  # atomic, and fails if the name exists
    except FileExistsError:
        raise
    except OSError:
        # File systems without hard links (FAT, some network mounts): check, then rename.
        if path.exists():
            raise FileExistsError(path) from None
        os.replace(temporary, path)


def to_uint8(image: np.ndarray, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """Map ``[low, high]`` linearly onto 0..255 (rounded, clipped): the one way mriganx makes 8-bit pixels.

    >>> to_uint8(np.array([-1.0, 0.0, 1.0, 3.0])).tolist()
    [0, 128, 255, 255]
    """
    scaled = (np.asarray(image, dtype=np.float64) - low) / max(high - low, 1e-12)
    return np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8)


def _write_nifti(image: nib.Nifti1Image, path: Path, overwrite: bool, protect: tuple[Path, ...], description: str) -> Path:
    image.header["cal_min"] = 0.0
    image.header["cal_max"] = 0.0
    image.header["descrip"] = description[:79].encode()
    with atomic_output(path, overwrite, protect) as temporary:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nib.save(image, temporary)
    return path


def save_nifti(array: np.ndarray, affine: np.ndarray, path: str | Path, overwrite: bool = False,
               description: str = "mriganx") -> Path:
    """Write ``array`` as NIfTI with ``affine`` in both qform and sform, code 1 (scanner), units mm; its dtype is
    kept (float32 images, uint8 labels). For an image read from a file, use :func:`save_like` instead."""
    image = nib.Nifti1Image(np.asarray(array), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    return _write_nifti(image, Path(path), overwrite, (), description)


def save_like(
    array: np.ndarray, like: Image, path: str | Path, overwrite: bool = False, description: str = "mriganx"
) -> Path:
    """Write ``array`` as NIfTI on the grid of ``like`` (see the module docstring); returns the path."""
    path = Path(path)
    if array.shape != like.array.shape:
        raise ValueError(f"array shape {array.shape} differs from the input grid {like.array.shape}")
    data = np.asarray(array, dtype=np.float32).reshape(like.disk_shape if like.kind is ImageKind.NIFTI else array.shape)
    if like.kind is ImageKind.NIFTI and like.header is not None:
        header = like.header.copy()
        header.set_data_dtype(np.float32)
        # Built from the header alone so that qform, sform and both codes are the input's, not recomputed.
        image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
        out = image_class(data, None, header=header)
    else:
        out = nib.Nifti1Image(data, like.affine)
        out.set_qform(like.affine, code=1)
        out.set_sform(like.affine, code=1)
        out.header.set_xyzt_units("mm")
    # nibabel stores float32 data unscaled, scl_slope 1 and scl_inter 0 in the file (its in-memory header shows NaN).
    return _write_nifti(out, path, overwrite, (like.source,), description)


def save_png(array: np.ndarray, path: str | Path, overwrite: bool = False, protect: tuple[Path, ...] = (),
             description: str | None = None) -> Path:
    """Write a 2D array of 8-bit values (see :func:`to_uint8`) as a grayscale PNG, atomically; ``description`` goes
    into its ``Description`` text (what a translation says it is, as a NIfTI's ``descrip``)."""
    from PIL.PngImagePlugin import PngInfo

    pixels = np.squeeze(np.asarray(array))
    if pixels.ndim != 2:
        raise ValueError(f"a PNG holds one 2D slice, got shape {array.shape}")
    if pixels.dtype != np.uint8:
        raise ValueError(f"a PNG slice needs uint8 pixels (use to_uint8), got {pixels.dtype}")
    with atomic_output(path, overwrite, protect) as temporary:
        info = PngInfo()
        if description is not None:
            info.add_text("Description", description)
            info.add_text("Software", OWN_MARK)
        PILImage.fromarray(pixels, mode="L").save(temporary, format="PNG", pnginfo=info)
    return Path(path)
