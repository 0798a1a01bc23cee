"""The DICOM series: reading a series onto one regular grid, and writing a translation back as a new series.

:func:`mriganx.io.load_image` hands a DICOM file or series folder to the reader here, and the :class:`mriganx.io.Image`
it returns follows the metadata contract of :mod:`mriganx.io`. For DICOM that contract reads:

What is read
------------
- A single DICOM file, or a folder holding one series (SimpleITK/GDCM). A folder with several series needs
  ``series`` (a SeriesInstanceUID; the error lists those present). GDCM orders the slices by ImagePositionPatient
  projected on the slice normal and takes the slice spacing from those positions, not from SliceThickness, as
  dcm2niix does.
- ``array``: the pixel values after RescaleSlope/Intercept, one value per pixel (colour images are refused); the
  array axes are (column, row, slice). A single 2D image has ``k == 1``.
- ``affine``: DICOM's LPS world coordinates converted to RAS (:data:`LPS_TO_RAS`), here and only here. A lone 2D
  image has no through-plane direction in ITK: its normal is the cross product of the in-plane directions, and its
  thickness a nominal 1 mm.
- ``header`` is ``None``; ``files`` are the files read, one per slice in slice order (or one multi-frame file).

What the geometry checks refuse (:func:`check_series_geometry`, before any pixel is read)
-----------------------------------------------------------------------------------------
Slices that do not lie on one regular grid, since a volume on a uniform grid would put some of them where they are
not: unreadable headers, different matrix sizes, a missing or non-positive PixelSpacing, different pixel sizes, and,
for more than one slice, a missing ImagePositionPatient or ImageOrientationPatient, several orientations (a localizer
mixed in), two slices at one position (duplicates, echoes, time points) or uneven gaps (missing slices). A folder
whose DICOM files form no readable series is refused as corrupt or truncated.

What the writer sets (:func:`save_dicom_series`)
------------------------------------------------
A DICOM input's translation, written as a new series in a folder, one file per slice, in the original's study:
new Series and SOP Instance UIDs, ImageType ``DERIVED\\SECONDARY\\OTHER``, SeriesNumber original + 1000, a
SeriesDescription and DerivationDescription that say it is synthetic, the patient, study and frame of reference of
the original, and on each slice its own input slice's geometry (ImagePositionPatient, ImageOrientationPatient,
PixelSpacing, SliceThickness, copied as written; the slice found from its position on the volume's grid, not from
file order), InstanceNumber and a SourceImageSequence naming it. Acquisition parameters, windows, icons and private
tags are not copied. Pixels are uint16 with one RescaleSlope/Intercept for the series (:func:`dicom_rescale`), so
the float values come back within half a rescale step. The series is written whole into a temporary folder and then
renamed (:func:`mriganx.io.atomic_folder`).

What the series always holds, whatever the input lacks
------------------------------------------------------
Every file is an MR Image (MR Image Storage, Explicit VR Little Endian, whatever the input's SOP class or transfer
syntax: implicit VR, big endian, deflated, RLE, JPEG; signed or unsigned pixels) carrying every Type 1 and Type 2
attribute of the modules it claims: Patient, General Study, General Series, Frame of Reference, General Equipment,
General Image, Image Plane, Image Pixel, MR Image, SOP Common. ``dciodvfy`` (dicom3tools) finds no error in it; it
warns only that RescaleSlope/Intercept are not in the MR IOD, which they carry so that the translation's values
come back (as many scanners write them). Where the input lacks something, a user gets what the input says and no
more:

- **A UID the series must have and the input has none of**: StudyInstanceUID or FrameOfReferenceUID missing on
  every slice get one fresh UID (:func:`pydicom.uid.generate_uid`) for the whole new series: it becomes a study (a
  frame) of its own, since there is none to join. A value on some slices and not others is the series' value for
  all of them. Series and SOP Instance UIDs are always new. UIDs present are copied as written, so that the series
  joins its study.
- **Type 2 attributes the input lacks** (PatientName, PatientID, PatientBirthDate, PatientSex, StudyDate, StudyTime,
  ReferringPhysicianName, StudyID, AccessionNumber, PatientPosition, Laterality, PositionReferenceIndicator,
  SliceThickness, MRAcquisitionType) are written empty, which in DICOM means unknown; nothing is invented.
- Modality is ``MR`` (a secondary capture's ``OT`` too: the file is an MR image); a missing SeriesNumber counts as 0.
- **InstanceNumber** is the input slice's where every slice has one and no two share it; otherwise (missing,
  repeated) the slices are numbered 1, 2, ... along the slice normal.
- **SourceImageSequence** names each input slice by its SOP Class and Instance UIDs (from the file meta information
  where the data set lacks them); a slice without them is not referenced (the sequence is optional, an item without
  them is not).
- **Lossy compression** in the input's history is kept: LossyImageCompression, its ratio and method are copied,
  and a lossy transfer syntax (JPEG baseline or extended, JPEG-LS near-lossless) sets ``01``: the translation was
  computed from pixels that compression changed.

What is refused, in one line naming the file and what it lacks, before any translation (:func:`check_series_out`,
which ``mriganx convert --output-format dicom|both`` calls right after reading the input):

- a slice without ImagePositionPatient or ImageOrientationPatient (a lone slice is read without them, onto a
  nominal grid, but an MR image must say where it lies and a made-up place would misplace the translation in a
  viewer): write NIfTI instead;
- a multi-frame file (Enhanced MR, or frames stacked in one file): the series is written one file per slice, from
  one file per slice;
- slices that name different studies, frames of reference or patients (StudyInstanceUID, FrameOfReferenceUID,
  PatientID): a series belongs to one of each, and picking one would file the translation under the wrong one;
- slices that do not lie on the volume's grid.

>>> from pydicom.data import get_testdata_file
>>> from mriganx.io import load_image
>>> image = load_image(get_testdata_file("MR_small.dcm"))
>>> image.kind.value, image.array.shape, len(image.files)
('dicom', (64, 64, 1), 1)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from mriganx import __version__
from mriganx.errors import MriganxError
from mriganx.io import DICOM_SUFFIXES, OWN_MARK, Image, ImageKind, atomic_folder

# DICOM LPS world coordinates -> NIfTI RAS: negate x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _is_dicom(path: Path) -> bool:
    if path.name.startswith(".") or path.suffix.lower() not in DICOM_SUFFIXES:
        return False
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def dicom_series(folder: Path) -> dict[str, list[str]]:
    """The DICOM series in a folder: SeriesInstanceUID -> file names ordered along the slice normal."""
    reader = sitk.ImageSeriesReader()
    return {uid: list(reader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in reader.GetGDCMSeriesIDs(str(folder))}


def _load_dicom(path: Path, series: str | None = None) -> Image:
    # SimpleITK (GDCM) rather than MONAI's PydicomReader: GDCM orders a series by ImagePositionPatient projected on
    # the slice normal and takes the slice spacing from those positions, not from SliceThickness, which is what
    # dcm2niix does too; MONAI's ITKReader would do the same but needs `itk`, which is not in our stack.
    try:
        if path.is_dir():
            found = dicom_series(path)
            if not found:
                files = [p for p in sorted(path.iterdir()) if _is_dicom(p)]
                if len(files) == 1:
                    return _load_dicom(files[0])  # names the file and its problem
                raise MriganxError(path, f"folder holds {len(files)} DICOM files but no readable series; are they corrupt or truncated?")
            if series is None and len(found) > 1:
                raise MriganxError(path, f"folder holds {len(found)} DICOM series; pick one with --series: {', '.join(found)}")
            if series is not None and series not in found:
                raise MriganxError(path, f"no series {series}; the folder holds: {', '.join(found)}")
            files = found[series or next(iter(found))]
            check_series_geometry(path, [Path(f) for f in files])
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            image = reader.Execute()
        else:
            check_series_geometry(path, [path])
            image = sitk.ReadImage(str(path))
            files = [str(path)]
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise MriganxError(path, f"cannot read DICOM, the file is corrupt or truncated ({first})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise MriganxError(path, "colour DICOM images are not MR magnitude images")
    result = sitk_to_image(image, path, ImageKind.DICOM)
    result.files = tuple(Path(f) for f in files)  # the DICOM writer takes each slice's header from its own file
    return result


def check_series_geometry(where: Path, files: list[Path]) -> None:
    """Refuse a DICOM series whose slices do not lie on one regular grid, before any pixel is read.

    A volume written on a uniform grid from such slices would put some of them where they are not (dcm2niix splits
    or warns in these cases): several orientations (a localizer mixed in), different matrices or pixel sizes,
    missing positions or pixel sizes, two slices at one position, or uneven gaps (missing slices).
    """
    headers = []
    for file in files:
        try:
            headers.append(pydicom.dcmread(file, stop_before_pixels=True))
        except (pydicom.errors.InvalidDicomError, OSError, EOFError) as exc:
            raise MriganxError(file, f"cannot read DICOM, the file is corrupt or truncated ({exc})") from None
    matrices = {(int(getattr(h, "Rows", 0)), int(getattr(h, "Columns", 0))) for h in headers}
    if len(matrices) > 1:
        sizes = " and ".join(f"{r}x{c}" for r, c in sorted(matrices))
        raise MriganxError(where, f"slices have different matrix sizes ({sizes}); they are not one volume: split them")
    spacings = []
    for file, header in zip(files, headers):
        value = getattr(header, "PixelSpacing", None)
        if value is None or len(value) != 2 or min(float(v) for v in value) <= 0:
            raise MriganxError(file, f"PixelSpacing is {'missing' if value is None else list(value)}; the pixel size is unknown")
        spacings.append([float(v) for v in value])
    if np.ptp(np.array(spacings), axis=0).max() > 1e-4:
        raise MriganxError(where, "slices have different pixel sizes (PixelSpacing); they are not one volume: split them")
    if len(headers) == 1:
        return
    orientations = []
    positions = []
    for file, header in zip(files, headers):
        iop, ipp = getattr(header, "ImageOrientationPatient", None), getattr(header, "ImagePositionPatient", None)
        if iop is None or len(iop) != 6 or ipp is None or len(ipp) != 3:
            missing = "ImageOrientationPatient" if iop is None or len(iop) != 6 else "ImagePositionPatient"
            raise MriganxError(file, f"has no {missing}; where this slice lies is unknown")
        orientations.append([float(v) for v in iop])
        positions.append([float(v) for v in ipp])
    orientations_array = np.array(orientations)
    if np.ptp(orientations_array, axis=0).max() > 1e-4:
        count = len({tuple(np.round(o, 3)) for o in orientations})
        raise MriganxError(where, f"slices have {count} different orientations (a localizer or another series mixed in?); "
                                  "split them into one folder per orientation")
    normal = np.cross(orientations_array[0, :3], orientations_array[0, 3:])
    depth = np.sort(np.array(positions) @ normal)
    gaps = np.diff(depth)
    if gaps.min() < 1e-3:
        raise MriganxError(where, "two slices lie at one position (duplicates, several echoes or time points?); "
                                  "split them into one folder per volume")
    usual = float(np.median(gaps))
    if gaps.max() - gaps.min() > max(0.01 * usual, 1e-3):
        raise MriganxError(where, f"slices are unevenly spaced (gaps from {gaps.min():.2f} to {gaps.max():.2f} mm, "
                                  f"usually {usual:.2f}): missing slices? A regular grid would misplace them")


def sitk_to_image(image: sitk.Image, source: Path, kind: ImageKind) -> Image:
    """Wrap a SimpleITK image (LPS, (z, y, x) arrays) as an :class:`Image` (RAS, (i, j, k) arrays)."""
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    dim = image.GetDimension()
    array = np.transpose(array, tuple(range(dim))[::-1])
    spacing = np.array(image.GetSpacing(), dtype=np.float64)
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    origin = np.array(image.GetOrigin(), dtype=np.float64)
    if dim == 2:
        array = array[..., None]
        direction = np.block([[direction, np.zeros((2, 1))], [np.zeros((1, 2)), np.ones((1, 1))]])
        # A lone 2D slice has no through-plane direction in ITK; the in-plane cross product gives the slice normal.
        direction[:, 2] = np.cross(direction[:, 0], direction[:, 1])
        spacing = np.append(spacing, 1.0)
        origin = np.append(origin, 0.0)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing
    lps[:3, 3] = origin
    return Image(array, LPS_TO_RAS @ lps, kind, source, None, array.shape)


DICOM_STORED_MAX = 65000  # of uint16's 65535: headroom for rounding RescaleSlope to a 16-character DS string
DICOM_SERIES_NUMBER_OFFSET = 1000  # a derived series is numbered original + 1000, clear of the scanner's numbers
# Copied from the source slice as they are: patient and study (the series sits in the original's study, for the
# original's patient), the frame of reference and the slice geometry (it overlays the original exactly). Nothing
# else is: acquisition parameters (TR, TE, TI, sequence), windows, icons and private tags describe the measured
# pixels, not the synthetic ones. Groups 0x0010 (patient) and 0x0012 (de-identification, clinical trial) are kept whole.
_DICOM_KEPT = (
    "SpecificCharacterSet", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "ReferringPhysicianName", "StudyDescription", "ProcedureCodeSequence",
    "AdmittingDiagnosesDescription", "Modality", "PatientPosition", "BodyPartExamined", "Laterality",
    "FrameOfReferenceUID", "PositionReferenceIndicator", "MRAcquisitionType",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    "SliceLocation",
)


def dicom_rescale(array: np.ndarray) -> tuple[float, float]:
    """``(RescaleSlope, RescaleIntercept)`` that store ``array`` as unsigned 16-bit integers within half a step,
    both exactly as their DICOM strings read back. The intercept is 0 for non-negative data (a background of 0 stays
    exactly 0), else the minimum.

    >>> dicom_rescale(np.array([0.0, 650.0]))
    (0.01, 0.0)
    """
    low, high = float(np.min(array)), float(np.max(array))
    intercept = float(pydicom.valuerep.format_number_as_ds(min(low, 0.0)))
    span = high - intercept
    slope = float(pydicom.valuerep.format_number_as_ds(span / DICOM_STORED_MAX)) if span > 0 else 1.0
    return slope, intercept


# Type 2 attributes of the MR Image IOD's modules (PS3.3 A.4) whose values only the input can know: written empty
# (DICOM's "unknown") where it has none, never invented. PatientPosition and Laterality are 2C, required of MR images.
_DICOM_TYPE2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",  # Patient
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",  # General Study
    "PatientPosition", "Laterality",  # General Series
    "PositionReferenceIndicator",  # Frame of Reference
    "SliceThickness",  # Image Plane
    "MRAcquisitionType",  # MR Image
)
# Where the pixels were once lossy-compressed, a derived image says so too (PS3.3 C.7.6.1.1.5).
_LOSSY_KEPT = ("LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod")
_LOSSY_SYNTAXES = {
    pydicom.uid.JPEGBaseline8Bit: "ISO_10918_1", pydicom.uid.JPEGExtended12Bit: "ISO_10918_1",
    pydicom.uid.JPEGLSNearLossless: "ISO_14495_1",
}
# Without these an MR image does not say where it lies (Image Plane module, Type 1).
_PLACEMENT = {"ImagePositionPatient": 3, "ImageOrientationPatient": 6, "PixelSpacing": 2}
# Series-level values every slice must share: a series belongs to one patient, study and frame of reference.
_SHARED = ("PatientID", "StudyInstanceUID", "FrameOfReferenceUID")


@dataclasses.dataclass(frozen=True)
class _SeriesPlan:
    """What the writer takes from the input, checked before any translation (:func:`check_series_out`)."""

    slices: list[tuple[int, pydicom.Dataset]]  # (slice k of the volume, that slice's input header), in k order
    study_uid: str
    frame_uid: str
    instance_numbers: list[int]


def _meta_or_own(header: pydicom.Dataset, keyword: str, meta_keyword: str) -> str:
    """A UID from the data set, else from its file meta information, else empty."""
    meta = getattr(header, "file_meta", None) or pydicom.Dataset()
    return str(header.get(keyword) or meta.get(meta_keyword) or "")


def _values(header: pydicom.Dataset, keyword: str) -> list[object]:
    """An attribute's values as a list: none where it is missing or empty, one where it holds a single value (a
    hostile file may hold one number where three belong)."""
    value = header.get(keyword)
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]


def _plan_series(like: Image) -> _SeriesPlan:
    if like.kind is not ImageKind.DICOM or not like.files:
        raise MriganxError(like.source, "a DICOM series can be written only for a DICOM input (it takes the patient, "
                                        "study and slice geometry from it); write NIfTI instead")
    headers = [(file, pydicom.dcmread(file, stop_before_pixels=True)) for file in like.files]
    depth = like.array.shape[2]
    for file, header in headers:
        frames = int(header.get("NumberOfFrames") or 1)
        if frames > 1:
            raise MriganxError(file, f"holds {frames} frames in one file (multi-frame, such as Enhanced MR); a DICOM "
                                     "series is written from one file per slice only: write NIfTI instead "
                                     "(--output-format nifti)")
    if len(headers) != depth:
        raise MriganxError(like.source, f"{len(headers)} DICOM file(s) hold {depth} slices (multi-frame?); "
                                        "a DICOM series is written for one file per slice only")
    for file, header in headers:
        for keyword, count in _PLACEMENT.items():
            if len(_values(header, keyword)) != count:
                raise MriganxError(file, f"has no {keyword}; an MR image must say where it lies, and a made-up place "
                                         "would misplace the translation: write NIfTI instead (--output-format nifti)")
    shared = {}
    for keyword in _SHARED:
        values = {str(header.get(keyword)) for _, header in headers if header.get(keyword)}
        if len(values) > 1:
            raise MriganxError(like.source, f"slices name {len(values)} different {keyword}s; a series belongs to one, "
                                            "and picking one would file the translation wrongly: split them")
        shared[keyword] = next(iter(values), "")
    # Each slice k of the volume from its position on the grid (not file order), so every output slice carries its
    # own input slice's geometry.
    to_voxel = np.linalg.inv(LPS_TO_RAS @ like.affine)
    ordered: dict[int, pydicom.Dataset] = {}
    for file, header in headers:
        voxel = to_voxel @ np.append(np.asarray(header.ImagePositionPatient, dtype=np.float64), 1.0)
        k = int(np.rint(voxel[2]))
        if np.abs(voxel[:3] - [0, 0, k]).max() > 1e-2 or not 0 <= k < depth or k in ordered:
            raise MriganxError(file, "this slice does not lie on the volume's grid; cannot write a DICOM series for it")
        ordered[k] = header
    slices = sorted(ordered.items(), key=lambda item: item[0])
    numbers = [int(header.get("InstanceNumber") or 0) for _, header in slices]
    if 0 in numbers or len(set(numbers)) != len(numbers):  # missing or repeated: viewers would sort them wrongly
        numbers = list(range(1, len(slices) + 1))
    return _SeriesPlan(slices, shared["StudyInstanceUID"] or pydicom.uid.generate_uid(),
                       shared["FrameOfReferenceUID"] or pydicom.uid.generate_uid(), numbers)


def check_series_out(like: Image) -> None:
    """Refuse, in one line naming the file and what it lacks, a DICOM input whose translation cannot be written as
    a valid DICOM series (see the module docstring): called before translating, so that nothing is computed, or
    written, for an output that would be refused at the end. :func:`save_dicom_series` checks the same."""
    _plan_series(like)


def written_series(folder: Path) -> bool:
    """Whether ``folder`` is a DICOM series mriganx wrote (:func:`save_dicom_series`): nothing in it but ``.dcm``
    files, each DERIVED with Manufacturer mriganx. The one kind of folder ``--overwrite`` replaces in DICOM out, and a
    folder conversion passes over (it is a translation, not a scan)."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    entries = sorted(folder.iterdir())
    if not entries or any(p.is_symlink() or not p.is_file() or p.suffix.lower() != ".dcm" for p in entries):
        return False
    for file in entries:
        try:
            header = pydicom.dcmread(file, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError):
            return False
        types = header.get("ImageType") or []
        if str(header.get("Manufacturer", "")) != OWN_MARK or "DERIVED" not in ([types] if isinstance(types, str) else list(types)):
            return False
    return True


def _dicom_now() -> tuple[str, str]:
    now = time.localtime()
    return time.strftime("%Y%m%d", now), time.strftime("%H%M%S", now)


def save_dicom_series(array: np.ndarray, like: Image, folder: str | Path, *, description: str,
                      window: tuple[float, float] | None = None, overwrite: bool = False) -> Path:
    """Write ``array`` (on the grid of ``like``, a DICOM image) as a new DICOM series in ``folder``, one file per
    slice (``slice-0001.dcm`` ...), so that a PACS viewer shows it next to the original; returns ``folder``.

    Each file is an MR image with new Series and SOP Instance UIDs, ImageType ``DERIVED\\SECONDARY\\OTHER``,
    SeriesDescription ``"<description> from <original SeriesDescription>"`` (64 characters at most), SeriesNumber
    original + 1000, the patient, study and frame of reference of the original, its own input slice's
    ImagePositionPatient, ImageOrientationPatient, PixelSpacing and SliceThickness (copied as written) and
    InstanceNumber, and a SourceImageSequence naming that input slice; what it holds where the input lacks any of
    these, and what it refuses before any file is written (:func:`check_series_out`), is in the module docstring.
    Pixels are uint16 with one RescaleSlope/Intercept for the series (:func:`dicom_rescale`): the float values come
    back within half a rescale step. WindowCenter/Width span ``window`` (default: the minimum to the 99.5th
    percentile). The folder is written whole or not at all (:func:`atomic_folder`); with ``overwrite`` an existing
    folder is replaced only if it is a series mriganx wrote (:func:`written_series`). Example:
    ``save_dicom_series(t2, load_image("series"), "out/series_t2_dicom",
    description="mriganx synthetic T2w")``.
    """
    folder = Path(folder)
    plan = _plan_series(like)
    if array.shape != like.array.shape:
        raise ValueError(f"array shape {array.shape} differs from the input grid {like.array.shape}")
    if overwrite and (folder.exists() or folder.is_symlink()) and not written_series(folder):
        raise MriganxError(folder, "holds files other than a DICOM series mriganx wrote; refusing to replace it")
    values = np.asarray(array, dtype=np.float64)
    slope, intercept = dicom_rescale(values)
    stored = np.clip(np.rint((values - intercept) / slope), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    low, high = window if window is not None else (float(values.min()), float(np.percentile(values, 99.5)))
    width = max(high - low, slope)
    series_uid = pydicom.uid.generate_uid()
    first = plan.slices[0][1]
    original_number = int(first.get("SeriesNumber") or 0)
    original_uid = str(first.get("SeriesInstanceUID") or "no SeriesInstanceUID")
    original_description = str(first.get("SeriesDescription", "")).strip()
    date, clock = _dicom_now()
    series_description = (f"{description} from {original_description}" if original_description else description)[:64]
    digits = max(4, len(str(len(plan.slices))))
    with atomic_folder(folder, overwrite, protect=like.files) as temporary:
        for (k, source), number in zip(plan.slices, plan.instance_numbers):
            ds = pydicom.Dataset()
            for element in source:
                if element.tag.group in (0x0010, 0x0012) or element.keyword in (*_DICOM_KEPT, *_LOSSY_KEPT):
                    ds.add(element)
            for keyword in _DICOM_TYPE2:
                if keyword not in ds:
                    setattr(ds, keyword, None)
            ds.StudyInstanceUID, ds.FrameOfReferenceUID = plan.study_uid, plan.frame_uid
            syntax = getattr(source, "file_meta", pydicom.Dataset()).get("TransferSyntaxUID")
            if syntax in _LOSSY_SYNTAXES and ds.get("LossyImageCompression") != "01":
                ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", _LOSSY_SYNTAXES[syntax]
            ds.SOPClassUID = pydicom.uid.MRImageStorage
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = original_number + DICOM_SERIES_NUMBER_OFFSET
            ds.InstanceNumber = number  # as the original where it can be: viewers sync by it
            ds.SeriesDescription = series_description
            ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]  # MR images need a third value; OTHER: none of the maps
            ds.DerivationDescription = (f"{description}: computed by mriganx {__version__} from series "
                                        f"{original_number} ({original_uid}); not a measured image")[:1024]
            ds.ImageComments = "SYNTHETIC image (mriganx), not a measured image"
            source_class = _meta_or_own(source, "SOPClassUID", "MediaStorageSOPClassUID")
            source_instance = _meta_or_own(source, "SOPInstanceUID", "MediaStorageSOPInstanceUID")
            if source_class and source_instance:  # an item must name both; the sequence itself is optional
                reference = pydicom.Dataset()
                reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = source_class, source_instance
                ds.SourceImageSequence = [reference]
            ds.Modality = "MR"
            ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = OWN_MARK, OWN_MARK, __version__
            ds.InstanceCreationDate = ds.SeriesDate = ds.ContentDate = date
            ds.InstanceCreationTime = ds.SeriesTime = ds.ContentTime = clock
            # MR image module: type 1 values that claim no sequence (RM: research mode), type 2 values left empty.
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "RM", "NONE", ""
            ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = None, None, None
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.Rows, ds.Columns = stored.shape[1], stored.shape[0]
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.RescaleSlope = pydicom.valuerep.format_number_as_ds(slope)
            ds.RescaleIntercept = pydicom.valuerep.format_number_as_ds(intercept)
            ds.RescaleType = "US"
            ds.WindowCenter = pydicom.valuerep.format_number_as_ds((low + high) / 2)
            ds.WindowWidth = pydicom.valuerep.format_number_as_ds(width)
            if width < 1:  # LINEAR needs a width of at least 1; LINEAR_EXACT takes any positive width
                ds.VOILUTFunction = "LINEAR_EXACT"
            ds.WindowCenterWidthExplanation = "mriganx"
            # Array axes are (column, row, slice); DICOM stores rows of columns.
            ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).astype("<u2").tobytes()
            ds.file_meta = pydicom.dataset.FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
            ds.save_as(temporary / f"slice-{k + 1:0{digits}d}.dcm", enforce_file_format=True)
    return folder
