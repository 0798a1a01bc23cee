"""Contrast detection (mriganx.contrast): T1w and T2w found from the image, everything else refused with a reason.

The phantoms here are drawn from the tissue labels of mriganx.synthetic with a sequence of our choosing (spin echo,
spoiled gradient echo, MPRAGE-like and FLAIR inversion recovery, proton density), so that a test can ask for a
contrast the package does not make; scripts/detection_table.py reuses these generators.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image as PILImage
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from mriganx.contrast import Detection, detect_contrast, name_contrast
from mriganx.frame import to_slices
from mriganx.io import Image, ImageKind, load_image
from mriganx.synthetic import TISSUE_PARAMETERS, Tissue, TissueParameters, make_phantom

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SEED_SET = SHARED_DATA / "seed-t1t2"
REAL_DEV = SHARED_DATA / "real-dev"
DICOM_SERIES = SHARED_DATA / "dicom-t1-series"

GRID = {"shape": (91, 109, 91), "spacing": 2.0}  # a whole head at 2 mm: a third of a second per phantom
NON_BRAIN = (Tissue.SCALP, Tissue.FAT, Tissue.SKULL)
BRAIN = (Tissue.CSF, Tissue.GM, Tissue.WM, Tissue.VENTRICLE)
# The slice orientation of a PNG (rows anterior -> posterior, columns right -> left), as mriganx.io reads it.
PNG_AFFINE = np.array([[0.0, -1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


# ---------------------------------------------------------------------------------------------------------------------
# Phantoms with a sequence of our choosing


def true_class(sequence: str) -> str:
    """The contrast a sequence makes: the three T1w sequences are "t1"."""
    return "t1" if sequence.startswith("t1") else sequence


def signal(sequence: str, tissue: TissueParameters, timing: dict[str, float]) -> float:
    """Signal of one tissue: spin echo, spoiled gradient echo or magnitude inversion recovery (times in ms)."""
    if tissue.pd == 0.0:
        return 0.0
    decay = np.exp(-timing["te"] / tissue.t2)
    recovery = np.exp(-timing["tr"] / tissue.t1)
    if sequence == "t1gre":
        flip = np.deg2rad(timing["flip"])
        return float(tissue.pd * np.sin(flip) * (1 - recovery) / (1 - np.cos(flip) * recovery) * decay)
    if sequence in ("t1ir", "flair"):
        return float(tissue.pd * abs(1 - 2 * np.exp(-timing["ti"] / tissue.t1) + recovery) * decay)
    return float(tissue.pd * (1 - recovery) * decay)


def draw_timing(sequence: str, rng: np.random.Generator) -> dict[str, float]:
    """Sequence timings over the range clinical protocols use."""
    u = rng.uniform
    if sequence == "t1":
        return {"tr": u(300, 800), "te": u(5, 20)}
    if sequence == "t1gre":
        return {"tr": u(15, 30), "te": u(3, 8), "flip": u(20, 45)}
    if sequence == "t1ir":  # MPRAGE-like
        return {"tr": u(1800, 2500), "ti": u(700, 1100), "te": u(2.5, 5)}
    if sequence == "t2":
        return {"tr": u(2500, 6000), "te": u(70, 140)}
    if sequence == "pd":
        return {"tr": u(2500, 6000), "te": u(8, 20)}
    if sequence == "flair":  # TI at the CSF null point of the drawn TR
        tr, csf_t1 = u(6000, 10000), TISSUE_PARAMETERS[Tissue.CSF].t1
        return {"tr": tr, "ti": csf_t1 * np.log(2 / (1 + np.exp(-tr / csf_t1))) * u(0.95, 1.05), "te": u(80, 140)}
    raise ValueError(sequence)


def textbook(sequence: str, s: dict[Tissue, float]) -> bool:
    """The tissue order that names each contrast, with a 5 % margin (what a radiologist would call it)."""
    wm, gm, csf = s[Tissue.WM], s[Tissue.GM], s[Tissue.CSF]
    if sequence.startswith("t1"):
        return wm >= 1.05 * gm and gm >= 1.05 * csf
    if sequence == "t2":
        return csf >= 1.05 * gm and gm >= 1.05 * wm
    if sequence == "flair":
        return gm >= 1.05 * wm and csf <= 0.5 * wm
    return 0.8 <= csf / gm <= 1.25 and gm / wm <= 1.3  # pd: CSF about as bright as GM, low grey/white contrast


def jittered(rng: np.random.Generator, amount: float) -> dict[Tissue, TissueParameters]:
    """BrainWeb's tissue parameters with one common factor for all T1s and one for all T2s (+-amount: field
    strength and subject move them together) and a third of that per tissue and parameter."""
    common_t1, common_t2 = rng.uniform(1 - amount, 1 + amount, 2)
    out = {}
    for tissue, p in TISSUE_PARAMETERS.items():
        j = rng.uniform(1 - amount / 3, 1 + amount / 3, 3)
        out[tissue] = TissueParameters(p.t1 * common_t1 * j[0], p.t2 * common_t2 * j[1], min(p.pd * j[2], 1.0))
    out[Tissue.VENTRICLE] = out[Tissue.CSF]  # one fluid
    return out


# Typical clinical protocols (ms): what a FLAIR or PD scan of a user most likely is.
_CSF_T1 = TISSUE_PARAMETERS[Tissue.CSF].t1
TYPICAL = {
    "flair": {"tr": 9000.0, "ti": _CSF_T1 * float(np.log(2 / (1 + np.exp(-9000.0 / _CSF_T1)))), "te": 120.0},
    "pd": {"tr": 3000.0, "te": 15.0},
}


def tissue_signals(
    sequence: str, rng: np.random.Generator, jitter: float, timing: dict[str, float] | None = None
) -> dict[Tissue, float]:
    """Per-tissue signal of a randomly drawn protocol (or of ``timing``); drawn again until the tissue order is the
    textbook one."""
    for _ in range(200):
        params = TISSUE_PARAMETERS if jitter == 0 else jittered(rng, jitter)
        protocol = timing or draw_timing(sequence, rng)
        signals = {tissue: signal(sequence, p, protocol) for tissue, p in params.items()}
        if timing is not None or textbook(sequence, signals):
            return signals
    raise RuntimeError(f"no textbook {sequence} drawn")


def smooth(array: np.ndarray, sigma_voxels: float) -> np.ndarray:
    image = sitk.GetImageFromArray(np.asarray(array, np.float32))
    return sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, float(sigma_voxels)))


def bias_field(shape: tuple[int, ...], rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """``1 + amplitude * b`` with ``b`` a random linear plus bilinear field scaled to ``|b| <= 1``."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    field = sum(rng.normal() * g for g in grids)
    pairs = ((grids[0], grids[1]), (grids[1], grids[2]), (grids[0], grids[2]))
    field = field + sum(0.5 * rng.normal() * g * h for g, h in pairs)
    return 1 + amplitude * field / max(float(np.abs(field).max()), 1e-6)


def reorient(array: np.ndarray, affine: np.ndarray, axcodes: str) -> tuple[np.ndarray, np.ndarray]:
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(axcodes)))
    return np.ascontiguousarray(apply_orientation(array, transform)), affine @ inv_ornt_aff(transform, array.shape)


def synth_volume(
    seed: int,
    sequence: str,
    shape: tuple[int, int, int] = GRID["shape"],
    spacing: float | tuple[float, float, float] = GRID["spacing"],
    axcodes: str = "RAS",
    stripped: bool = False,
    tight: bool = False,
    noise: float = 0.02,
    bias: float = 0.0,
    jitter: float = 0.2,
    timing: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A phantom head scanned with ``sequence`` (timings and tissue parameters drawn from ``seed``; ``jitter=0``
    keeps BrainWeb's parameters), optionally brain-extracted (``tight``: the outer CSF goes too), with partial-volume
    blur, a bias field of amplitude ``bias`` and Rician noise of ``noise`` times the mean brain signal; ``timing``
    fixes the protocol. Returns the array and its affine, in ``axcodes`` order."""
    rng = np.random.default_rng(seed + 7919)
    phantom = make_phantom(seed, shape=shape, spacing=spacing)
    labels, affine = phantom.labels, phantom.affine
    signals = tissue_signals(sequence, rng, jitter, timing)
    if stripped:
        labels = np.where(np.isin(labels, NON_BRAIN), Tissue.BACKGROUND, labels).astype(np.uint8)
        if tight:  # a tight brain mask: CSF within two voxels of the outside goes, sulcal CSF deeper in stays
            outside = sitk.GetImageFromArray((labels == Tissue.BACKGROUND).astype(np.uint8))
            near = sitk.GetArrayFromImage(sitk.BinaryDilate(outside, [2, 2, 2])).astype(bool)
            labels[near & (labels == Tissue.CSF)] = Tissue.BACKGROUND
    lookup = np.zeros(256, np.float32)
    for tissue, value in signals.items():
        lookup[int(tissue)] = value
    image = smooth(lookup[labels], 0.6)  # partial volume
    image *= 1 + 0.02 * smooth(rng.standard_normal(image.shape), 3.0) / 0.029  # texture: 2 % over ~6 voxels
    if bias:
        image *= bias_field(image.shape, rng, bias)
    image = image / max(float(image.max()), 1e-9) * 1000
    if noise:
        sigma = noise * float(image[np.isin(labels, BRAIN)].mean())
        image = np.hypot(image + sigma * rng.standard_normal(image.shape), sigma * rng.standard_normal(image.shape))
    return reorient(image.astype(np.float32), affine, axcodes)


def cached(seed: int, sequence: str, stripped: bool = False, typical: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The phantoms several tests share (generation takes most of this file's time); read-only."""
    return _cached(seed, sequence, stripped, typical)


@functools.lru_cache(maxsize=32)
def _cached(seed: int, sequence: str, stripped: bool, typical: bool) -> tuple[np.ndarray, np.ndarray]:
    timing = TYPICAL[sequence] if typical else None
    jitter = 0.0 if typical else 0.2
    array, affine = synth_volume(seed, sequence, stripped=stripped, bias=0.1, jitter=jitter, timing=timing)
    array.flags.writeable = False
    return array, affine


def volume(array: np.ndarray, affine: np.ndarray, name: str = "phantom.nii.gz") -> Image:
    return Image(array=array, affine=affine, kind=ImageKind.NIFTI, source=Path(name), disk_shape=array.shape)


def axial_slice(array: np.ndarray, affine: np.ndarray, z_mm: float, name: str = "slice.png") -> Image:
    """The axial slice nearest world height ``z_mm`` as a 2D image in the PNG orientation, shape ``(rows, cols, 1)``.
    The seed slices lie at z = -2 .. 53 mm of the MNI grid; the phantom's head is centred at z = 18."""
    heights = np.tensordot(affine[2, :3], np.indices(array.shape), axes=1) + affine[2, 3]
    k = int(np.argmin(np.abs(to_slices(heights, affine).mean(axis=(1, 2)) - z_mm)))
    plane = to_slices(array, affine)[k]
    png = PNG_AFFINE.copy()
    png[:2, :2] *= float(np.sqrt((affine[:3, :3] ** 2).sum(axis=0)).min())
    return Image(array=plane[..., None].copy(), affine=png, kind=ImageKind.PNG, source=Path(name),
                 disk_shape=plane.shape)


def rotated(affine: np.ndarray, degrees: float, axis: int) -> np.ndarray:
    """The affine turned about a world axis: an oblique acquisition of the same voxels."""
    t = np.deg2rad(degrees)
    turn = np.eye(4)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    turn[i, i], turn[i, j], turn[j, i], turn[j, j] = np.cos(t), -np.sin(t), np.sin(t), np.cos(t)
    return turn @ affine


# ---------------------------------------------------------------------------------------------------------------------
# T1w and T2w are found


def _assert_detected(found: Detection, expected: str) -> None:
    assert found.contrast == expected, found
    assert found.reason is None
    assert (found.score > 0) == (expected == "t1"), found
    assert f"-> {expected.upper()}w" in found.evidence


WHOLE_AND_EXTRACTED = [(1, "t1", False), (2, "t1ir", False), (3, "t2", False), (5, "t1gre", True), (6, "t2", True)]


@pytest.mark.parametrize(("seed", "sequence", "stripped"), WHOLE_AND_EXTRACTED)
def test_volumes_with_and_without_scalp_are_detected(seed: int, sequence: str, stripped: bool) -> None:
    _assert_detected(detect_contrast(volume(*cached(seed, sequence, stripped))), true_class(sequence))


@pytest.mark.parametrize(("seed", "sequence", "stripped"), WHOLE_AND_EXTRACTED)
def test_single_axial_slices_are_detected(seed: int, sequence: str, stripped: bool) -> None:
    array, affine = cached(seed, sequence, stripped)
    # From the ventricles to the centrum semiovale (the phantom's brain ends at z = 70 mm; slices within 25 mm of
    # its top hold more cortex than white matter and are often refused: see scripts/detection_table.py).
    for z_mm in (0.0, 20.0, 40.0):
        _assert_detected(detect_contrast(axial_slice(array, affine, z_mm)), true_class(sequence))


@pytest.mark.parametrize(("seed", "sequence"), [(1, "t1"), (3, "t2")])
def test_lps_oblique_thick_slices_and_a_tight_brain_mask(seed: int, sequence: str) -> None:
    array, affine = cached(seed, sequence)
    # 6 mm slices (three 2 mm slices averaged), stored LPS, the grid turned 20 degrees about the x axis.
    thick = array[:, :, :90].reshape(91, 109, 30, 3).mean(axis=3)
    thick_affine = affine @ np.diag([1.0, 1.0, 3.0, 1.0])
    thick_affine[:3, 3] += affine[:3, 2]  # the centre of the first three slices
    lps, lps_affine = reorient(thick, thick_affine, "LPS")
    _assert_detected(detect_contrast(volume(lps, rotated(lps_affine, 20.0, axis=0))), sequence)
    array, affine = synth_volume(seed + 7, sequence, axcodes="PIR", stripped=True, tight=True)
    _assert_detected(detect_contrast(volume(array, affine)), sequence)


@pytest.mark.parametrize(("seed", "sequence"), [(2, "t1ir"), (3, "t2")])
def test_png_files_and_coronal_one_slice_niftis_are_detected(seed: int, sequence: str, tmp_path: Path) -> None:
    array, affine = cached(seed, sequence)
    plane = axial_slice(array, affine, z_mm=40.0).array[..., 0]
    pixels = np.clip(np.rint(plane / np.percentile(plane, 99.5) * 255), 0, 255).astype(np.uint8)
    PILImage.fromarray(pixels).save(tmp_path / "slice.png")
    _assert_detected(detect_contrast(load_image(tmp_path / "slice.png")), true_class(sequence))
    shift = np.eye(4)
    shift[1, 3] = 58  # a coronal slice through the ventricles (the cached arrays are RAS)
    coronal = volume(np.ascontiguousarray(array[:, 58:59, :]), affine @ shift)
    _assert_detected(detect_contrast(coronal), true_class(sequence))


def test_detection_is_deterministic_and_fast_on_a_1mm_head() -> None:
    array, affine = cached(3, "t2")
    # The 2 mm phantom on the 181x217x181 grid at 1 mm (each voxel doubled): the size the requirement names.
    big = np.ascontiguousarray(array.repeat(2, 0).repeat(2, 1).repeat(2, 2)[:181, :217, :181])
    fine = affine.copy()
    fine[:3, :3] /= 2.0
    image = volume(big, fine)
    first = detect_contrast(image)
    started = time.perf_counter()
    second = detect_contrast(image)
    took = time.perf_counter() - started
    assert first == second and first.contrast == "t2"
    assert took < 1.0, f"{took:.2f} s"


# ---------------------------------------------------------------------------------------------------------------------
# Anything else is refused, with a reason


@pytest.mark.parametrize(("sequence", "stripped"), [("flair", False), ("flair", True), ("pd", False)])
def test_typical_flair_and_pd_are_refused(sequence: str, stripped: bool) -> None:
    array, affine = cached(11, sequence, stripped, typical=True)
    for image in (volume(array, affine), axial_slice(array, affine, z_mm=20.0), axial_slice(array, affine, z_mm=40.0)):
        found = detect_contrast(image)
        assert found.contrast is None, found
        assert sequence.upper() in found.reason or "no grey/white contrast" in found.reason, found


@functools.lru_cache(maxsize=1)
def _ct(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like head in Hounsfield units: air -1000, fat -100, CSF 8, WM 28, GM 40, bone 1200."""
    phantom = make_phantom(seed, **GRID)
    units = {Tissue.BACKGROUND: -1000, Tissue.SCALP: 40, Tissue.FAT: -100, Tissue.SKULL: 1200, Tissue.CSF: 8,
             Tissue.GM: 40, Tissue.WM: 28, Tissue.VENTRICLE: 8}
    lookup = np.zeros(256, np.float32)
    for tissue, value in units.items():
        lookup[int(tissue)] = value
    noise = np.random.default_rng(seed).normal(0, 4, phantom.labels.shape)
    return (smooth(lookup[phantom.labels], 0.6) + noise).astype(np.float32), phantom.affine


@functools.lru_cache(maxsize=1)
def _non_heads() -> dict[str, Image]:
    rng = np.random.default_rng(0)
    shape, affine = GRID["shape"], np.diag([2.0, 2.0, 2.0, 1.0])
    noise = np.abs(rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.float32) * 100
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius2 = sum(g**2 for g in grid)
    field = smooth(rng.standard_normal(shape), 4.0)
    blob = np.where(radius2 < 0.6, np.maximum(500 + field / field.std() * 100, 0), 0).astype(np.float32)
    dome = np.where(radius2 < 0.6, 1000 * (1 - radius2), 0).astype(np.float32)  # bright centre, dark rim, like a T1w
    return {
        "noise": volume(noise, affine),
        "blob": volume(blob, affine),
        "dome": volume(dome, affine),
        "ct": volume(*_ct(13)),
        "noise slice": volume(noise[:, :, 40:41].copy(), affine),
        "blob slice": axial_slice(blob, affine, z_mm=0.0),
        "ct slice": axial_slice(*_ct(13), z_mm=30.0),
        "constant": volume(np.full(shape, 7.0, np.float32), affine),
    }


@pytest.mark.parametrize("name", ["noise", "blob", "dome", "ct", "noise slice", "blob slice", "ct slice", "constant"])
def test_noise_and_non_heads_are_refused(name: str) -> None:
    found = detect_contrast(_non_heads()[name])
    assert found.contrast is None, found
    assert found.reason, found


# ---------------------------------------------------------------------------------------------------------------------
# The file name supports, never decides


def test_name_contrast_reads_bids_suffixes() -> None:
    assert name_contrast("sub-01_ses-2_run-1_T1w.nii.gz") == "T1w"
    assert name_contrast(Path("/data/sub-01/anat/sub-01_t2w.nii")) == "T2w"
    assert name_contrast("sub-01_FLAIR.nii.gz") == "FLAIR"
    assert name_contrast("T1w_notes.nii.gz") is None  # a suffix is the last entity, not anywhere in the name
    assert name_contrast("scan.png") is None


def test_a_name_is_reported_but_never_overrides_the_image() -> None:
    t1, affine = cached(2, "t1ir")
    agreeing = detect_contrast(volume(t1, affine, "sub-01_T1w.nii.gz"))
    assert agreeing.contrast == "t1" and "name says T1w" in agreeing.evidence
    conflicting = detect_contrast(volume(t1, affine, "sub-01_T2w.nii.gz"))
    assert conflicting.contrast is None and "looks T1w but the file name says T2w" in conflicting.reason
    flair_named = detect_contrast(volume(t1, affine, "sub-01_FLAIR.nii.gz"))
    assert flair_named.contrast is None and "FLAIR" in flair_named.reason
    pd, pd_affine = cached(11, "pd", typical=True)
    hopeful = detect_contrast(volume(pd, pd_affine, "sub-01_T2w.nii.gz"))
    assert hopeful.contrast is None and "name says T2w" in hopeful.evidence


def test_a_name_never_settles_an_undecided_image() -> None:
    """A T2w phantom with a third of its grey matter darkened to half the WM level in blobs (CSF-dark spots next to
    WM that no real T2w shows so widely) is undecided; a _T2w name leaves it so, since the image alone decides and
    two files with the same voxels must get the same answer. A typical FLAIR or PD named _T2w stays refused too."""
    phantom = make_phantom(5, **GRID)
    t2 = phantom.t2.copy()
    wm = float(np.median(t2[phantom.labels == Tissue.WM]))
    field = smooth(np.random.default_rng(0).standard_normal(t2.shape), 1.2)
    t2[(phantom.labels == Tissue.GM) & (field > 0.5 * field.std())] = 0.5 * wm
    alone = detect_contrast(volume(t2, phantom.affine, "scan.nii.gz"))
    named = detect_contrast(volume(t2, phantom.affine, "sub-01_T2w.nii.gz"))
    assert alone.contrast is None and named.contrast is None, (alone, named)
    assert named.reason == alone.reason and named.evidence == f"{alone.evidence} (name says T2w)"
    for sequence in ("flair", "pd"):
        array, affine = cached(11, sequence, typical=True)
        found = detect_contrast(volume(array, affine, "sub-01_T2w.nii.gz"))
        assert found.contrast is None, (sequence, found)


# ---------------------------------------------------------------------------------------------------------------------
# Real data: the seed slices and a real DICOM T1 series


def _seed_pngs() -> list[tuple[Path, str]]:
    return [(p, expected) for expected, folder in (("t1", "trainT1"), ("t2", "trainT2"))
            for p in sorted((SEED_SET / folder).glob("*.png"))]


def _needs(path: Path) -> pytest.MarkDecorator:
    reason = f"shared real data not found at {path} (it sits beside the checkout)"
    return pytest.mark.skipif(not path.exists(), reason=reason)


@_needs(SEED_SET)
def test_seed_slices_are_detected() -> None:
    pairs = _seed_pngs()
    assert len(pairs) >= 80
    # Every other slice keeps this test short; scripts/detection_table.py scores all of them.
    wrong = [(p.name, expected, detect_contrast(load_image(p))) for p, expected in pairs[::2]]
    wrong = [w for w in wrong if w[2].contrast != w[1]]
    assert not wrong, wrong[:3]


@_needs(DICOM_SERIES)
def test_the_dicom_t1_series_is_detected() -> None:
    image = load_image(DICOM_SERIES)
    _assert_detected(detect_contrast(image), "t1")
    one = Image(array=image.array[..., 4:5].copy(), affine=image.affine, kind=ImageKind.DICOM, source=DICOM_SERIES)
    _assert_detected(detect_contrast(one), "t1")


# Every real scan of the development set, each under a neutral name so that its BIDS suffix cannot help. The truth is
# the suffix: post-contrast T1w are T1w; FLAIR must be refused.
_REAL_DEV = {
    "aomic-0001_T1w": "t1", "aomic-0001_desc-brain_T1w": "t1", "aomic-0002_T1w": "t1", "aomic-0002_desc-brain_T1w": "t1",
    "brats-GLI-00001_desc-brain_T1w": "t1", "brats-GLI-00001_desc-brain_ce-gadolinium_T1w": "t1",
    "brats-GLI-00001_desc-brain_T2w": "t2", "brats-GLI-00001_desc-brain_FLAIR": None,
    "tcga-DU-7294_desc-brain_T1w": "t1", "tcga-DU-7294_desc-brain_T2w": "t2", "tcga-DU-7294_desc-brain_FLAIR": None,
    "tcga-FG-6692_T1w": "t1", "tcga-FG-6692_ce-gadolinium_T1w": "t1", "tcga-FG-6692_T2w": "t2",
    "tcga-FG-6692_FLAIR": None,
}


@_needs(REAL_DEV)
@pytest.mark.parametrize(("name", "expected"), _REAL_DEV.items())
def test_real_development_scans_are_read_right_under_neutral_names(name: str, expected: str | None) -> None:
    image = load_image(REAL_DEV / f"{name}.nii.gz")
    found = detect_contrast(Image(array=image.array, affine=image.affine, kind=image.kind, source=Path("scan.nii.gz")))
    if expected is None:
        assert found.contrast is None and ("FLAIR-like" in found.reason or "lesion" in found.reason), found
    else:
        _assert_detected(found, expected)
    assert "\n" not in found.evidence


# ---------------------------------------------------------------------------------------------------------------------
# A clean terminal on refusals


def test_a_refused_scan_draws_no_progress_bar(smoke_model: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from mriganx.convert import convert

    source = tmp_path / "noise.nii.gz"
    noise = np.abs(np.random.default_rng(0).normal(size=(40, 48, 40))).astype(np.float32)
    nib.save(nib.Nifti1Image(noise, np.diag([2.0, 2.0, 2.0, 1.0])), source)
    capfd.readouterr()
    report = convert([source], smoke_model, output=tmp_path / "out", progress=True)
    assert len(report.failed) == 1 and "--direction" in str(report.failed[0])
    assert capfd.readouterr().err == ""  # no empty slice bar drawn before the refusal


def test_a_plain_pickle_model_file_is_refused_without_torch_warnings(tmp_path: Path) -> None:
    """pickle protocol 4 makes torch warn before its weights-only reader refuses the file: the refusal alone shows."""
    import pickle
    import warnings

    from mriganx.errors import MriganxError
    from mriganx.modelfile import ModelFile

    path = tmp_path / "pickled.pt"
    path.write_bytes(pickle.dumps({"format": "mriganx-model"}, protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning would fail the test instead of being printed
        with pytest.raises(MriganxError, match="not a loadable mriganx model"):
            ModelFile.load(path)
