"""Automatic contrast detection: is an image T1-weighted, T2-weighted, or neither?

The rule reads the tissue order that defines the two contrasts, in the place where each tissue lies. It works on
axial slices in the slice frame of :mod:`mriganx.frame` at about 2 mm in-plane (for a volume up to 12 slices
30-85 mm below the top of the head, the levels of the seed slices; when the top is cut off, within 55 mm of the
volume's upper end, above the orbits and skull base; a 2D image is its own single slice), inside the head (the
largest object above the background, holes filled), and measures every intensity relative to white matter (WM = 1):

1. **White matter by place.** The deep half of the head (at least half its largest depth below the outline) is
   mostly WM in every contrast, and WM is the thick, even tissue there: the mode of its flattest 40 % (smallest
   gradients; GM is a 3 mm ribbon and always next to an edge) is the WM level. The WM region is the tissue deeper
   than a quarter of the largest depth within a tolerance of that level (2.5 noise sigmas, 4-8 %), regrown while a
   smooth polynomial WM level is refitted to it, so that a bias field neither splits WM nor passes for contrast.
2. **Grey matter next to it.** Within 4.5 mm of the WM region lie the cortical ribbon, the deep nuclei and the
   ventricle walls. Of the WM and that tissue, a share is a little brighter than WM and a share a little darker
   ("a little": from the tolerance to 35 %); ``asymmetry`` = (brighter - darker) / (brighter + darker): near -1 when
   what borders WM is darker (T1w: GM, CSF), near +1 when it is brighter (T2w; also FLAIR and PD, whose GM is
   brighter than WM). Together the two shares must reach 10 %, or there is no grey/white contrast to read.
3. **Grey matter seen from dark CSF.** Where CSF is dark (below 0.67x WM), the ``GM step`` is the median of the
   tissue 1-2 voxels from it (the cortical ribbon lining the sulci) minus the median 4-6 voxels from it (WM): a T1w
   brightens on into WM (step -0.08 to -0.15 on real T1w), a FLAIR does not (0 to -0.01). It reads GM where GM is
   within the WM tolerance of WM (spin-echo and post-contrast T1w), where the asymmetry sees mostly noise.
4. **CSF is the extreme near it.** Within 7 mm of the WM region lie sulci and ventricles: ``darkest`` and
   ``brightest`` are the 5th and 95th percentiles there. At the centre of the head (deeper than 60 % of the largest
   depth: the lateral and third ventricles) the shares of CSF-dark (< 0.67x) and CSF-bright (> 1.5x) tissue give the
   CSF polarity, which a tumour's oedema or cyst, a vessel or an iron-rich nucleus next to WM cannot turn around.

Decision: **T1w** when CSF is dark (darkest <= 0.8, and the CSF-bright centre at most a third of the CSF-dark one)
and GM darker than WM (asymmetry <= -0.8, or, for 3 slices or more, a GM step <= -0.08 with asymmetry <= -0.2);
**T2w** when CSF is bright (brightest >= 1.4, darkest >= 0.7, the CSF-dark centre at most a third of the CSF-bright
one) and GM not darker than WM (asymmetry >= 0). Anything else is undecided, with the reason in the words of the
tissue order: FLAIR-like (dark CSF but GM not darker than WM), PD-like (GM and CSF hardly brighter than WM), both
polarities at the centre (a lesion, or a mixed contrast), no head (nothing stands out of the background noise), no
grey/white contrast (too little differs from WM next to it, or one level covers the whole head, as in CT). The
thresholds were set on phantoms with randomised sequences, the seed slices, the DICOM T1 series and the real
development scans of ``shared/data/real-dev`` (under neutral names), never on the real validation volumes.
``score`` is signed evidence, > 0 T1w-like, < 0 T2w-like: ``-asymmetry - log(darkest * brightest)``.

Limits (measured with scripts/detection_table.py): a FLAIR whose grey matter is less than about 10 % brighter than
white matter, seen at 2 mm or coarser, can pass for a T1w; single slices near the top of the brain, where cortex
outweighs white matter, are often undecided; a FLAIR whose oedema fills the centre of the head as CSF fills it in a
T2w is kept from T2w only by its dark CSF near WM (darkest).

A BIDS suffix in the file name (``_T1w``, ``_T2w``, ``_FLAIR``, ...) is reported in the evidence and can only refuse:
when it names another contrast than the image shows the result is undecided ("conflicting"), since either may be
wrong and translating in the wrong direction is worse than asking for ``--direction``. It never decides: an image
the rule leaves undecided stays undecided whatever its name, so that two files with the same voxels never get
opposite directions and a mislabelled file is not translated on its label's word. (Until the GM step and the CSF
polarity, a ``_T1w``/``_T2w`` name settled an undecided image that showed part of the named order; with them the
image alone reads every real T1w and T2w of the development set, which the name rule was there to rescue.)

>>> from pathlib import Path
>>> from mriganx.io import Image, ImageKind
>>> from mriganx.synthetic import make_phantom
>>> ph = make_phantom(seed=1, shape=(91, 109, 91), spacing=2.0)
>>> def image(array, name):
...     return Image(array=array, affine=ph.affine, kind=ImageKind.NIFTI, source=Path(name))
>>> detect_contrast(image(ph.t1, "sub-01_T1w")).contrast
't1'
>>> found = detect_contrast(image(ph.t2, "sub-01_T1w"))
>>> found.contrast, found.reason
(None, 'the image looks T2w but the file name says T1w')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from mriganx.config import CONTRAST_NAMES
from mriganx.frame import to_slices
from mriganx.io import Image, image_stem
from mriganx.slices import frame_spacing

__all__ = ["Detection", "detect_contrast", "name_contrast"]

T1, T2 = "t1", "t2"

# About 2 mm in-plane: fine enough for a 3 mm cortex next to WM, coarse enough to be fast and to average noise away.
TARGET_MM = 2.0
# A volume is judged on at most this many slices, spread evenly over the chosen levels.
MAX_SLICES = 12
# The chosen levels: this far below the top of the head. The seed slices lie 35-90 mm below it; from 30 mm down a
# slice holds a WM core, and down to 85 mm it is still above the eyes, skull base and cerebellum.
BELOW_TOP_MM = (30.0, 85.0)
# A 3x3 median up to this voxel size (mm); on coarser grids it would erase the cortex (a 4 mm voxel is as thick).
MEDIAN_MAX_MM = 2.5
# Head mask: half-way between the background and Otsu's threshold, so that dark tissue (CSF in a T1w, skull) stays
# inside more often than with Otsu's threshold itself.
MASK_LEVEL = 0.5
# The head must stand out: its median at least this many background noise sigmas above the background.
MIN_SNR = 6.0
# The WM region: deeper than this share of the head's largest depth (keeps scalp of the same level out of it).
WM_DEPTH = 0.25
# The WM level is the mode of the flattest share (in percent) of the deep half of the head.
FLAT_PERCENT = 40.0
# Tolerance around the WM level: 2.5 sigmas of the core around it, never below 4 % (partial volume, what the smooth
# level does not follow) nor above 8 % (a FLAIR's GM lies 5-30 % above WM, a T1w spin echo's 10-25 % below).
TOLERANCE = (0.04, 0.08)
# GM is looked for this close to WM (mm), CSF this close; the outer rim of the head is left out (partial volume).
GM_RING_MM = 4.5
CSF_RING_MM = 7.0
EDGE_MM = 2.5
# "A little" brighter or darker than WM: up to 35 % (GM in every contrast; beyond is CSF, fat or bone).
NEAR_WM = 0.35
# CSF-dark and CSF-bright relative to WM: beyond anything GM reaches in any contrast.
CSF_DARK, CSF_BRIGHT = 0.67, 1.5
# The centre of the head: deeper than this share of its largest depth (the lateral and third ventricles).
CENTRE_DEPTH = 0.6
# The grey-matter band: 1-2 voxels (at least 2 mm each) from dark CSF, compared with tissue 4-6 voxels from it.
GM_BAND, FAR_BAND = (1.05, 2.05), (4.05, 6.05)
# Decision thresholds, see the module docstring.
T1_MAX_ASYMMETRY, T1_MAX_DARKEST = -0.8, 0.8
# The second way to T1w: a GM band at least 8 % darker than the tissue deeper in (real T1w 8-15 %, real FLAIR 0-1 %,
# phantom FLAIR volumes with GM within 5 % of WM up to 6 %), with the tissue next to WM leaning darker. Only for at
# least this many slices: one slice holds too little dark CSF to read so small a step.
T1_MAX_GM_STEP, T1_STEP_MAX_ASYMMETRY, STEP_MIN_SLICES = -0.08, -0.2, 3
T2_MIN_ASYMMETRY, T2_MIN_BRIGHTEST, T2_MIN_DARKEST = 0.0, 1.4, 0.7
# CSF polarity: the other extreme may hold at most this share of what the named one holds at the centre.
POLARITY = 1.0 / 3.0
# At least this share of the tissue next to WM must differ from it by more than the tolerance (GM does in T1w and
# T2w; in CT, where soft tissues differ by 1-2 % of the signal above air, nothing does).
MIN_CONTRAST_SHARE = 0.1
# A brain has a WM plateau among other tissues: the WM region holds this share of the head (CT's brain is one level).
WM_SHARE = (0.05, 0.75)
# Large distance (mm) between slices stacked for one SimpleITK call, so that distances stay within each slice.
_APART_MM = 1.0e6

_BIDS_SUFFIXES = ("T1w", "T2w", "FLAIR", "PDw", "PD", "T2starw", "PDT2", "inplaneT1", "inplaneT2", "angio")
_BIDS_SUFFIX = re.compile(r"_(" + "|".join(_BIDS_SUFFIXES) + r")$", re.IGNORECASE)
_SAME = {"inplaneT1": "T1w", "inplaneT2": "T2w"}  # T1w and T2w images in the plane of a functional run


@dataclass(frozen=True)
class Detection:
    """What :func:`detect_contrast` found.

    ``contrast``: ``"t1"``, ``"t2"`` or ``None`` (undecided); ``score``: signed evidence, > 0 T1w-like, < 0 T2w-like
    (0 when there is no head to measure); ``evidence``: one line with the measures; ``reason``: why undecided, else
    ``None``.
    """

    contrast: str | None
    score: float
    evidence: str
    reason: str | None = None


@dataclass(frozen=True)
class _Measures:
    asymmetry: float
    brighter: float  # share of the tissue next to WM a little brighter than WM
    darker: float  # ... a little darker
    darkest: float
    brightest: float
    gm_step: float | None  # median of the GM band minus median further from dark CSF; None without dark CSF
    centre_dark: float  # share of the centre of the head that is CSF-dark
    centre_bright: float  # ... CSF-bright
    tolerance: float
    wm_share: float
    slices: int

    @property
    def darker_grey(self) -> bool:
        """GM darker than WM: nearly all that differs next to WM is darker, or the GM band is clearly darker."""
        if self.asymmetry <= T1_MAX_ASYMMETRY:
            return True
        return (
            self.gm_step is not None
            and self.slices >= STEP_MIN_SLICES
            and self.gm_step <= T1_MAX_GM_STEP
            and self.asymmetry <= T1_STEP_MAX_ASYMMETRY
        )

    @property
    def dark_csf(self) -> bool:
        return self.darkest <= T1_MAX_DARKEST and self.centre_bright <= POLARITY * self.centre_dark

    @property
    def bright_csf(self) -> bool:
        return (
            self.brightest >= T2_MIN_BRIGHTEST
            and self.darkest >= T2_MIN_DARKEST
            and self.centre_dark <= POLARITY * self.centre_bright
        )


def name_contrast(path: str | Path) -> str | None:
    """The BIDS suffix of a file or folder name (``"T1w"``, ``"T2w"``, ``"FLAIR"``, ...), or ``None``.

    >>> name_contrast("sub-01_ses-1_T1w"), name_contrast("scan_t2w"), name_contrast("brain")
    ('T1w', 'T2w', None)
    """
    found = _BIDS_SUFFIX.search(image_stem(path))
    if found is None:
        return None
    return next(s for s in _BIDS_SUFFIXES if s.lower() == found.group(1).lower())


def detect_contrast(image: Image, *, read_name: bool = True) -> Detection:
    """Whether ``image`` is T1w, T2w or neither, from the image itself (see the module docstring).

    Volumes in any orientation and voxel size, and single 2D slices (``array`` of shape ``(i, j, 1)``), with or
    without scalp and skull. Deterministic; raises nothing for an ordinary image. ``read_name=False`` leaves the
    file name out entirely, for a caller that weighs the name itself (:mod:`mriganx.bids`, where the BIDS suffix is
    the dataset's own claim and only a clear contradiction by the image refuses it).
    """
    found = _detect(np.asarray(image.array), np.asarray(image.affine, dtype=np.float64))
    named = name_contrast(image.source) if image.source is not None and read_name else None
    if named is None:
        return found
    evidence = f"{found.evidence} (name says {named})"
    named_as = _SAME.get(named, named)
    if found.contrast is None or named_as == CONTRAST_NAMES[found.contrast]:
        return Detection(found.contrast, found.score, evidence, found.reason)
    reason = f"the image looks {CONTRAST_NAMES[found.contrast]} but the file name says {named}"
    return Detection(None, found.score, evidence, reason)


def _detect(array: np.ndarray, affine: np.ndarray) -> Detection:
    if array.size == 0 or not np.all(np.isfinite(array)):
        return Detection(None, 0.0, "nothing measured", "the image is empty or has non-finite voxels")
    problem, m = _measure(*_planes(array, affine))
    if m is None:
        return Detection(None, 0.0, "nothing measured", problem)
    score = float(-m.asymmetry - np.log(max(m.darkest, 1e-3) * max(m.brightest, 1e-3)))
    band = "no dark CSF" if m.gm_step is None else f"{m.gm_step:+.2f}"
    evidence = (
        f"next to white matter {m.darker:.0%} of the tissue is darker, {m.brighter:.0%} brighter (asymmetry "
        f"{m.asymmetry:+.2f}); near it the darkest 5% are {m.darkest:.2f}x WM, the brightest {m.brightest:.2f}x; "
        f"GM band vs deeper {band}; centre {m.centre_dark:.0%} CSF-dark, {m.centre_bright:.0%} CSF-bright "
        f"({m.slices} slice{'s' if m.slices > 1 else ''})"
    )
    if m.dark_csf and m.darker_grey:
        return Detection(T1, score, f"{evidence} -> T1w")
    if m.bright_csf and m.asymmetry >= T2_MIN_ASYMMETRY:
        return Detection(T2, score, f"{evidence} -> T2w")
    return Detection(None, score, f"{evidence} -> undecided", _why_not(m))


def _why_not(m: _Measures) -> str:
    """Why an image with a head is neither T1w nor T2w, in the words of the tissue order."""
    if m.dark_csf:
        return "dark CSF but grey matter not darker than white matter (FLAIR-like)"
    if m.bright_csf:
        return "bright CSF but tissue darker than white matter next to it (weak T2w evidence)"
    if min(m.centre_dark, m.centre_bright) > POLARITY * max(m.centre_dark, m.centre_bright):
        return "both CSF-dark and CSF-bright regions at the centre of the head (a lesion, or a mixed contrast)"
    if m.darkest <= T1_MAX_DARKEST:
        return "dark CSF but tissue much brighter than white matter near it (FLAIR-like or mixed)"
    if m.asymmetry >= T2_MIN_ASYMMETRY and m.brightest < T2_MIN_BRIGHTEST:
        return "grey matter and CSF hardly brighter than white matter (PD-like)"
    if m.darker_grey:
        return "white matter brightest but CSF not dark (weak T1w evidence)"
    return "weak or contradictory grey/white/CSF contrast"


def _planes(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The image as planes ``(n, rows, cols)``, their in-plane spacing and the distance between them (mm, 0 for one).

    A volume becomes axial slices in the slice frame; a 2D image (one axis of length 1) stays the plane it is, in any
    orientation, since no measure depends on the in-plane direction.
    """
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    long_axes = [axis for axis, n in enumerate(array.shape) if n > 1]
    if len(long_axes) < 3:
        shape = [array.shape[a] for a in long_axes] + [1] * (2 - len(long_axes))
        inplane = list(spacing[long_axes]) + [1.0] * (2 - len(long_axes))
        return array.reshape(1, *shape), np.array(inplane), 0.0
    thick, rows, cols = frame_spacing(affine)
    return to_slices(array, affine), np.array([rows, cols]), thick


def _measure(stack: np.ndarray, spacing: np.ndarray, thick: float) -> tuple[str | None, _Measures | None]:
    """The tissue measures of the module docstring, or why there is nothing to measure."""
    factors = [max(1, int(round(TARGET_MM / s))) if s > 0 else 1 for s in spacing]
    sample = stack[:, :: factors[0], :: factors[1]].astype(np.float32)
    values = sample.ravel()[:: max(1, sample.size // 200_000)]  # percentiles of 7 M voxels would take 0.2 s
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.9]))
    if high <= low:
        return "the image is constant", None
    # The background is the zero of every ratio below (CT's -1000 included).
    threshold = MASK_LEVEL * (_otsu(np.clip(values, low, high)) - low)
    area = (sample > low + threshold).sum(axis=(1, 2))
    if area.max() == 0:
        return "no head: nothing stands out of the background", None
    planes, spacing = _downsample(stack[_choose_slices(area, thick)], spacing, factors)
    planes = planes - np.float32(low)
    if spacing.max() <= MEDIAN_MAX_MM:
        planes = _median3(planes)
    heads = _heads(planes > threshold)
    keep = heads.sum(axis=(1, 2)) >= 50
    if not keep.any():
        return "no head: no object large enough", None
    planes, heads = planes[keep], heads[keep]

    inside, outside = planes[heads], planes[~heads]
    if outside.size < 0.05 * planes.size:
        return "no head: no object with background around it (noise, or a crop inside the head)", None
    noise = 1.4826 * float(np.median(np.abs(outside - np.median(outside))))
    if float(np.median(inside) - np.median(outside)) < MIN_SNR * max(noise, 1e-6 * (high - low)):
        return "no head: nothing stands out of the background noise", None

    depth = _distance(heads, spacing, inside=True)
    deepest = depth.max(axis=(1, 2), keepdims=True)
    core = heads & (depth >= 0.5 * deepest)
    gradient = _gradient(planes, spacing)
    flat = [p[c][g[c] <= np.percentile(g[c], FLAT_PERCENT)] for p, c, g in zip(planes, core, gradient) if c.any()]
    wm = _mode(np.concatenate(flat)) if flat else 0.0
    if wm <= 0:
        return "no white-matter-like plateau in the middle of the head", None
    body = heads & (depth >= EDGE_MM)
    deep = heads & (depth >= WM_DEPTH * deepest)

    # A first pass with the widest tolerance finds each slice's smooth WM level; the spread of the core around it
    # (noise, and what the level does not follow) sets the tolerance of the second pass.
    start = np.full(planes.shape[1:], wm, np.float32)
    levels = [_wm_level(p, d, start, TOLERANCE[1], degrees=(0, 1, 2, 2)) for p, d in zip(planes, deep)]
    if all(lv is None for lv in levels):
        return "no white-matter-like plateau in the middle of the head", None
    around = np.concatenate([(p / lv)[c] for p, c, lv in zip(planes, core, levels) if lv is not None])
    around = around[np.abs(around - 1.0) < 0.3]
    spread = 1.4826 * float(np.median(np.abs(around - 1.0))) if around.size else TOLERANCE[1]
    tolerance = float(np.clip(2.5 * spread, *TOLERANCE))
    levels = [lv if lv is None else _wm_level(p, d, lv, tolerance, (2,)) for p, d, lv in zip(planes, deep, levels)]
    measured = [k for k, lv in enumerate(levels) if lv is not None]
    if not measured:
        return "no white-matter-like plateau in the middle of the head", None
    ratio = np.stack([planes[k] / levels[k] for k in measured])
    wm_region = deep[measured] & (np.abs(ratio - 1.0) <= tolerance)
    wm_share = float(wm_region.sum() / heads[measured].sum())
    if not WM_SHARE[0] <= wm_share <= WM_SHARE[1]:
        what = "almost all of" if wm_share > WM_SHARE[1] else "hardly any of"
        return f"no grey/white/CSF contrast: one tissue level covers {what} the head", None

    from_wm = _distance(wm_region, spacing, inside=False)
    # On coarse grids the rings are at least one and two voxels wide.
    near_wm = ratio[body[measured] & (from_wm <= max(GM_RING_MM, 1.2 * spacing.max()))]
    rim = ratio[body[measured] & (from_wm > 0) & (from_wm <= max(CSF_RING_MM, 2.1 * spacing.max()))]
    if rim.size < 20:
        return "too little tissue around the white matter to measure", None
    brighter = float(((near_wm > 1 + tolerance) & (near_wm < 1 + NEAR_WM)).mean())
    darker = float(((near_wm < 1 - tolerance) & (near_wm > 1 - NEAR_WM)).mean())
    if brighter + darker < MIN_CONTRAST_SHARE:
        share = f"{brighter + darker:.1%}"
        return f"no grey/white contrast: only {share} of the tissue next to white matter differs from it", None
    asymmetry = (brighter - darker) / (brighter + darker)
    darkest, brightest = (float(v) for v in np.percentile(rim, [5, 95]))
    heads, depth, deepest, deep = heads[measured], depth[measured], deepest[measured], deep[measured]
    centre = ratio[heads & (depth >= CENTRE_DEPTH * deepest)]
    centre_dark = float((centre < CSF_DARK).mean()) if centre.size else 0.0
    centre_bright = float((centre > CSF_BRIGHT).mean()) if centre.size else 0.0
    measures = _Measures(
        asymmetry, brighter, darker, darkest, brightest, _gm_step(ratio, heads, deep, spacing), centre_dark,
        centre_bright, tolerance, wm_share, len(measured)
    )
    return None, measures


def _gm_step(ratio: np.ndarray, heads: np.ndarray, deep: np.ndarray, spacing: np.ndarray) -> float | None:
    """Where CSF is dark: the median tissue 1-2 voxels from it (mostly the cortical ribbon lining the sulci) minus
    the median 4-6 voxels from it (mostly WM), as ratios to WM; ``None`` when too little lies in either.

    Seen from dark CSF, a T1w brightens steadily through GM into WM; a FLAIR brightens into GM and then no further.
    Unlike the tissue next to the WM region this reads GM where it lies even when GM and WM differ by less than the
    WM tolerance (spin echo and post-contrast T1w), and bright vessels or uneven WM hardly move a median.
    """
    dark = (ratio < CSF_DARK) | ~heads
    step = max(float(spacing.max()), TARGET_MM)
    from_dark = _distance(dark, spacing, inside=False)
    tissue = deep & ~dark
    band = ratio[tissue & (from_dark > GM_BAND[0] * step) & (from_dark <= GM_BAND[1] * step)]
    far = ratio[tissue & (from_dark > FAR_BAND[0] * step) & (from_dark <= FAR_BAND[1] * step)]
    if band.size < 20 or far.size < 20:
        return None
    return float(np.median(band) - np.median(far))


def _choose_slices(area: np.ndarray, thick: float) -> list[int]:
    """Axial slices through the cerebrum: 30-85 mm below the top of the head when the top is in the volume."""
    n = len(area)
    biggest = float(area.max())
    chosen: list[int] = []
    if n > 1 and thick > 0 and area[-1] < 0.2 * biggest:
        top = int(np.flatnonzero(area >= 0.05 * biggest)[-1])
        below = (top - np.arange(n)) * thick
        chosen = [k for k in range(n) if BELOW_TOP_MM[0] <= below[k] <= BELOW_TOP_MM[1] and area[k] >= 0.4 * biggest]
    if not chosen and n > 1 and thick > 0:
        # The top of the head is cut off: it lies above the last slice, so the levels 30-85 mm below it start at most
        # 55 mm below that slice (lower down come the orbits, skull base and cerebellum, with fat and bone).
        below = (n - 1 - np.arange(n)) * thick
        chosen = [k for k in range(n) if below[k] <= BELOW_TOP_MM[1] - BELOW_TOP_MM[0] and area[k] >= 0.4 * biggest]
    if not chosen:  # a single slice, or a slab too thin for the levels: the widest slices
        chosen = [k for k in range(n) if area[k] >= 0.5 * biggest]
    if len(chosen) > MAX_SLICES:
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, MAX_SLICES).round().astype(int)]
    return chosen


def _downsample(planes: np.ndarray, spacing: np.ndarray, factors: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Block means of ``factors`` voxels in-plane (1 mm -> 2x2 blocks)."""
    fr, fc = factors
    rows, cols = (planes.shape[1] // fr) * fr, (planes.shape[2] // fc) * fc
    if (fr == fc == 1) or rows == 0 or cols == 0:
        return planes.astype(np.float32), spacing
    cut = planes[:, :rows, :cols].astype(np.float32)
    means = cut.reshape(len(planes), rows // fr, fr, cols // fc, fc).mean(axis=(2, 4))
    return means, spacing * np.array(factors, dtype=float)


def _median3(planes: np.ndarray) -> np.ndarray:
    """3x3 median of each plane: halves the noise and leaves the edges between tissues where they are."""
    padded = np.pad(planes, ((0, 0), (1, 1), (1, 1)), mode="edge")
    rows, cols = planes.shape[1:]
    shifted = np.stack([padded[:, i : i + rows, j : j + cols] for i in range(3) for j in range(3)])
    return np.partition(shifted, 4, axis=0)[4]


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    counts, edges = np.histogram(values, bins)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts).astype(float)
    mass = np.cumsum(counts * centres)
    above = below[-1] - below
    valid = (below > 0) & (above > 0)
    between = np.zeros_like(centres)
    between[valid] = (mass[valid] * below[-1] - mass[-1] * below[valid]) ** 2 / (below[valid] * above[valid])
    return float(centres[int(np.argmax(between))])


def _labels(masks: np.ndarray) -> np.ndarray:
    """Connected components of each plane, in one SimpleITK call: the planes are stacked with empty ones between."""
    n, rows, cols = masks.shape
    spaced = np.zeros((2 * n - 1, rows, cols), np.uint8)
    spaced[::2] = masks
    return sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(spaced)))[::2]


def _heads(masks: np.ndarray) -> np.ndarray:
    """The largest object of each plane with its holes filled (dark skull and CSF inside the head are head)."""
    labels = _labels(masks)
    heads = np.zeros_like(masks)
    for k, plane in enumerate(labels):
        counts = np.bincount(plane.ravel())
        if len(counts) > 1:
            heads[k] = plane == 1 + int(np.argmax(counts[1:]))
    background = _labels(~heads)
    for k, plane in enumerate(background):
        border = np.unique(np.concatenate([plane[0], plane[-1], plane[:, 0], plane[:, -1]]))
        heads[k] |= (plane > 0) & ~np.isin(plane, border)
    return heads


def _distance(masks: np.ndarray, spacing: np.ndarray, inside: bool) -> np.ndarray:
    """Distance (mm) to the outline of each plane's mask, positive inside (``inside``) or outside it."""
    image = sitk.GetImageFromArray(masks.astype(np.uint8))
    image.SetSpacing((float(spacing[1]), float(spacing[0]), _APART_MM))  # SimpleITK orders x = column first
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=inside, squaredDistance=False, useImageSpacing=True)
    return sitk.GetArrayFromImage(distance)


def _gradient(planes: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    rows, cols = np.gradient(planes, float(spacing[0]), float(spacing[1]), axis=(1, 2))
    return np.hypot(rows, cols)


def _mode(values: np.ndarray) -> float:
    """The most common value (centre of the fullest of 64 bins between the 1st and 99th percentiles)."""
    low, high = np.percentile(values, [1, 99])
    if high <= low:
        return float(high)
    counts, edges = np.histogram(values, 64, (low, high))
    counts = np.convolve(counts, [1, 2, 3, 2, 1], mode="same")  # the peak of a tissue, not of one noisy bin
    peak = int(np.argmax(counts))
    return float((edges[peak] + edges[peak + 1]) / 2)


def _wm_level(
    plane: np.ndarray, deep: np.ndarray, level: np.ndarray, tolerance: float, degrees: tuple[int, ...]
) -> np.ndarray | None:
    """A smooth WM level over the plane, refitted in turns to the deep tissue within ``tolerance`` of the last one.

    A polynomial in row and column fitted to the log intensity: a bias field is smooth and multiplicative, and a
    polynomial reaches WM that the region has not taken in yet. ``None`` when there is too little WM.
    """
    rows, cols = np.indices(plane.shape, dtype=np.float64)
    rows, cols = rows / plane.shape[0] - 0.5, cols / plane.shape[1] - 0.5
    basis = np.stack([np.ones_like(rows), rows, cols, rows * rows, cols * cols, rows * cols], axis=-1)
    log_plane = np.log(np.maximum(plane, 1e-6))
    for degree in degrees:
        region = deep & (np.abs(plane / level - 1.0) <= tolerance)
        if region.sum() < 10:
            return None
        terms = basis[..., : (1, 3, 6)[degree]]
        coefficients, *_ = np.linalg.lstsq(terms[region], log_plane[region], rcond=None)
        level = np.exp(terms @ coefficients).astype(np.float32)
    return level
