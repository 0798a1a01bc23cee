"""Procedural head phantoms with ground-truth tissue labels, for tests and demos.

Each subject is a random but anatomically ordered head: scalp (skin, then subcutaneous fat), skull, a CSF layer, a
folded grey-matter cortex (sulci that CSF reaches into, white-matter gyral fingers, the interhemispheric fissure),
white matter, deep grey nuclei and two lateral ventricles. The anatomy lives in millimetres around the grid centre,
so any grid works: the default 181x217x181 grid at 1 mm is the MNI152/BrainWeb grid; on a coarser grid pass a larger
``spacing`` so that the head (about 145 x 180 x 132 mm, left-right x front-back x height) still fits.

The T1-weighted and T2-weighted images follow from the tissue fractions in every voxel (partial volume) and the
spin-echo signal equation ``S = PD * (1 - exp(-TR/T1)) * exp(-TE/T2)`` with BrainWeb's 1.5 T tissue parameters
(see :data:`TISSUE_PARAMETERS`). Intensities are float32, scaled per contrast so that the brightest tissue's
noise-free signal is 1000 (fat in T1w, CSF in T2w); air is exactly 0 unless ``noise`` is set.

By default every subject is scanned the same way (:data:`T1W_SEQUENCE`, :data:`T2W_SEQUENCE`, no bias, no noise,
full resolution, with scalp and skull). :func:`make_phantom` takes the acquisition as arguments (sequence timings,
an inversion-recovery T1w, relaxation times that differ per subject, brain extraction, blur, thick slices).

Everything is plain numpy; a 181x217x181 subject takes one to two seconds, a (48, 56, 40) grid at 4 mm a few
hundredths of one.

>>> ph = make_phantom(seed=1, shape=(48, 56, 40), spacing=4.0)
>>> ph.t1.shape, ph.t1.dtype, ph.labels.dtype
((48, 56, 40), dtype('float32'), dtype('uint8'))
>>> wm, gm = ph.labels == Tissue.WM, ph.labels == Tissue.GM
>>> bool(ph.t1[wm].mean() > ph.t1[gm].mean() and ph.t2[wm].mean() < ph.t2[gm].mean())
True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

from mriganx.frame import MNI_SHAPE, to_slices
from mriganx.io import ImageKind, output_path, save_nifti, save_png, to_uint8

__all__ = [
    "Tissue",
    "TissueParameters",
    "TISSUE_PARAMETERS",
    "T1W_SEQUENCE",
    "T2W_SEQUENCE",
    "BRAIN_TISSUES",
    "Phantom",
    "spin_echo",
    "inversion_recovery",
    "mni_affine",
    "make_phantom",
    "write_subjects",
]


class Tissue(IntEnum):
    """Label values of :attr:`Phantom.labels`."""

    BACKGROUND = 0
    SCALP = 1  # skin and muscle of the scalp
    SKULL = 2
    CSF = 3  # subarachnoid CSF around the brain and in the sulci
    GM = 4  # cortex and the deep grey nuclei
    WM = 5
    VENTRICLE = 6  # CSF of the lateral ventricles
    FAT = 7  # subcutaneous fat under the skin: the bright ring of a T1w image


# What a brain-extracted ("skull-stripped") scan keeps: CSF, grey and white matter, ventricles.
BRAIN_TISSUES = (Tissue.CSF, Tissue.GM, Tissue.WM, Tissue.VENTRICLE)


@dataclass(frozen=True)
class TissueParameters:
    """Relaxation times in ms and proton density relative to CSF."""

    t1: float
    t2: float
    pd: float


# BrainWeb's MRI-simulator tissue parameters at 1.5 T, Collins et al., IEEE TMI 17(3):463-468, 1998 and Kwan et al.,
# IEEE TMI 18(11):1085-1097, 1999, as listed at https://brainweb.bic.mni.mcgill.ca/brainweb/tissue_mr_parameters.txt
# (CSF 2569/329 ms PD 1.0, GM 833/83 ms PD 0.86, WM 500/70 ms PD 0.77, fat 350/70 ms PD 1.0, muscle/skin 900/47 ms
# PD 1.0, skull PD 0). BrainWeb gives skull no signal (cortical bone's T2* is below a millisecond), so neither do we;
# its T1/T2 here are placeholders that PD = 0 makes irrelevant. Ventricles hold CSF; deep grey nuclei use GM's values.
TISSUE_PARAMETERS: dict[Tissue, TissueParameters] = {
    Tissue.BACKGROUND: TissueParameters(t1=1.0, t2=1.0, pd=0.0),
    Tissue.SCALP: TissueParameters(t1=900.0, t2=47.0, pd=1.0),
    Tissue.FAT: TissueParameters(t1=350.0, t2=70.0, pd=1.0),
    Tissue.SKULL: TissueParameters(t1=1.0, t2=1.0, pd=0.0),
    Tissue.CSF: TissueParameters(t1=2569.0, t2=329.0, pd=1.0),
    Tissue.GM: TissueParameters(t1=833.0, t2=83.0, pd=0.86),
    Tissue.WM: TissueParameters(t1=500.0, t2=70.0, pd=0.77),
    Tissue.VENTRICLE: TissueParameters(t1=2569.0, t2=329.0, pd=1.0),
}

# (TR, TE) in ms. Short TR/short TE weights T1: WM > GM > CSF, fat brightest. Long TR/long TE weights T2:
# CSF > GM > WM. With the table above: T1w fat 1000, scalp 506, WM 641, GM 529, CSF 276; T2w CSF 1000, GM 440,
# fat 412, WM 317, scalp 204.
T1W_SEQUENCE = (500.0, 15.0)
T2W_SEQUENCE = (4000.0, 100.0)

# Share of white-matter signal in the deep grey nuclei (labelled GM).
NUCLEI_WM_SHARE = 0.4

# The intensity the brightest tissue of each contrast gets (before texture, bias and noise).
FULL_SCALE = 1000.0

# Head size in mm (semi-axes left-right, front-back, height), before per-subject jitter and shape perturbation.
_HEAD_SEMI_AXES = (72.0, 90.0, 66.0)


def spin_echo(tissue: TissueParameters, tr: float, te: float) -> float:
    """Spin-echo signal ``PD * (1 - exp(-TR/T1)) * exp(-TE/T2)`` of one tissue (times in ms).

    >>> round(spin_echo(TISSUE_PARAMETERS[Tissue.CSF], 4000.0, 100.0), 3)
    0.582
    """
    if tissue.pd == 0.0:
        return 0.0
    return float(tissue.pd * (1.0 - np.exp(-tr / tissue.t1)) * np.exp(-te / tissue.t2))


def inversion_recovery(tissue: TissueParameters, tr: float, ti: float, te: float) -> float:
    """Magnitude inversion-recovery signal ``PD * |1 - 2 exp(-TI/T1) + exp(-TR/T1)| * exp(-TE/T2)`` (times in ms).

    The textbook model of an MPRAGE-like T1w: with TI near 900 ms CSF is close to its null point (dark), white
    matter has recovered most (bright), so the T1w order WM > GM > CSF is stronger than in a spin echo.

    >>> [round(inversion_recovery(TISSUE_PARAMETERS[t], 2000.0, 900.0, 3.0), 3) for t in (Tissue.WM, Tissue.CSF)]
    [0.507, 0.05]
    """
    if tissue.pd == 0.0:
        return 0.0
    recovery = 1.0 - 2.0 * np.exp(-ti / tissue.t1) + np.exp(-tr / tissue.t1)
    return float(tissue.pd * abs(recovery) * np.exp(-te / tissue.t2))


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == has no single truth value
class Phantom:
    """One synthetic subject: both contrasts and the labels on one grid.

    ``t1``, ``t2``: float32 intensities (brightest tissue about 1000); ``labels``: uint8 :class:`Tissue` values;
    all in the voxel order of ``affine`` (4x4 float64, voxel index -> RAS+ world mm).
    """

    t1: np.ndarray
    t2: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    # The acquisition actually simulated, JSON-ready: the make_phantom arguments that shape the images, and the
    # tissue parameters after any per-subject jitter ({"CSF": {"t1": ..., "t2": ..., "pd": ...}, ...}).
    parameters: dict[str, Any] = field(default_factory=dict)


def _as_triple(value: float | Sequence[float], name: str) -> tuple[float, float, float]:
    triple = (value,) * 3 if np.isscalar(value) else tuple(value)
    if len(triple) != 3:
        raise ValueError(f"{name} needs 1 or 3 values, got {value!r}")
    return tuple(float(v) for v in triple)  # type: ignore[return-value]


def mni_affine(shape: Sequence[int] = MNI_SHAPE, spacing: float | Sequence[float] = 1.0) -> np.ndarray:
    """RAS+ affine of a grid whose centre voxel sits at world (0, -18, 18) mm, the centre of the MNI152 grid.

    For the 181x217x181 grid at 1 mm it is the MNI152 (and BrainWeb) affine; other grids keep the same centre.

    >>> mni_affine()[:3, 3].tolist()
    [-90.0, -126.0, -72.0]
    >>> mni_affine((48, 56, 40), 4.0)[:3, 3].tolist()
    [-94.0, -128.0, -60.0]
    """
    sizes = np.asarray(_as_triple(spacing, "spacing"))
    half = (np.asarray(shape, dtype=float) - 1.0) / 2.0
    affine = np.diag([*sizes, 1.0])
    affine[:3, 3] = np.array([0.0, -18.0, 18.0]) - sizes * half
    return affine


# --------------------------------------------------------------------------------------------------------------------
# Anatomy


@dataclass(frozen=True)
class _Waves:
    """A smooth random field: a sum of plane waves ``sum_j amp_j * cos(k_j . p + phase_j)``."""

    k: np.ndarray  # (J, 3) wave vectors, rad / (unit of p)
    phase: np.ndarray  # (J,)
    amp: np.ndarray  # (J,)

    @staticmethod
    def draw(rng: np.random.Generator, n: int, wavenumber: tuple[float, float], amp: float) -> _Waves:
        direction = rng.normal(size=(n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        k = direction * rng.uniform(*wavenumber, size=(n, 1))
        return _Waves(k, rng.uniform(0, 2 * np.pi, n), np.full(n, amp) * rng.uniform(0.5, 1.0, n))

    def __call__(self, px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
        total = np.zeros(np.broadcast_shapes(px.shape, py.shape, pz.shape), np.float32)
        for (kx, ky, kz), phase, amp in zip(self.k.astype(np.float32), self.phase, self.amp):
            total += np.float32(amp) * np.cos(px * kx + py * ky + (pz * kz + np.float32(phase)))
        return total

    def value_and_gradient(self, px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> tuple[np.ndarray, ...]:
        value = np.zeros(px.shape, np.float32)
        gx, gy, gz = (np.zeros(px.shape, np.float32) for _ in range(3))
        for (kx, ky, kz), phase, amp in zip(self.k.astype(np.float32), self.phase, self.amp):
            arg = px * kx + py * ky + pz * kz + np.float32(phase)
            value += np.float32(amp) * np.cos(arg)
            s = np.sin(arg)
            s *= np.float32(-amp)
            gx += s * kx
            gy += s * ky
            gz += s * kz
        return value, gx, gy, gz

    @property
    def bound(self) -> float:
        return float(self.amp.sum())


@dataclass(frozen=True)
class _Ellipsoid:
    centre: tuple[float, float, float]  # mm, relative to the head centre; x is mirrored for the right/left pair
    semi: tuple[float, float, float]


@dataclass(frozen=True)
class _Anatomy:
    """Everything random about one subject, drawn from the seed and independent of the grid."""

    semi_axes: tuple[float, float, float]
    head_shape: _Waves  # relative radius perturbation, a function of direction
    skin: float
    fat: float
    skull: float
    csf: float
    csf_extra: _Waves  # extra CSF in mm over the brain (function of direction)
    cortex: float  # grey-matter thickness, mm
    sulci: _Waves  # zero set = sulcal mid-planes; evaluated on the brain surface in mm
    sulcal_bend: tuple[_Waves, _Waves, _Waves]  # per-mm-of-depth shift of the sulci field: sulci bend, not spokes
    sulcal_depth: float
    sulcal_depth_field: _Waves
    sulcal_halfwidth: float
    fissure_wiggle: _Waves
    fissure_depth: float
    ventricle_scale: tuple[float, float]  # right, left
    ventricle_shift: tuple[float, float, float]
    nuclei: tuple[_Ellipsoid, ...]
    texture: _Waves
    bias_t1: _Waves
    bias_t2: _Waves


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return x, y, z


# Deep grey nuclei of the right side (mirrored to the left): centre and semi-axes in mm from the head centre.
_NUCLEI = (
    _Ellipsoid((12.5, 24.0, -4.0), (5.0, 9.0, 8.0)),  # caudate head, beside the frontal horn
    _Ellipsoid((23.0, 7.0, -8.0), (5.5, 14.0, 8.5)),  # putamen
    _Ellipsoid((10.0, -8.0, -9.0), (7.5, 13.0, 8.0)),  # thalamus
)


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
    """Draw one subject. The draws come in a fixed order, so a seed means the same head on every grid."""
    semi = _triple(np.asarray(_HEAD_SEMI_AXES) * (1 + rng.uniform(-0.03, 0.03, 3)))
    nuclei = tuple(_Ellipsoid(_triple(np.add(n.centre, rng.uniform(-1.5, 1.5, 3))), n.semi) for n in _NUCLEI)
    head_shape = _Waves.draw(rng, 6, (1.5, 3.0), 0.008)
    skin, fat, skull, csf = (float(rng.uniform(lo, hi)) for lo, hi in ((2.2, 2.8), (3.0, 4.5), (5.5, 7.5), (1.2, 1.8)))
    csf_extra = _Waves.draw(rng, 5, (2.0, 4.0), 0.3)
    cortex = float(rng.uniform(2.8, 3.3))
    # Random waves of one wavelength have labyrinth-like zero sets with the spacing of real gyri (~11 mm).
    sulci = _Waves.draw(rng, 32, (2 * np.pi / 24.0, 2 * np.pi / 20.0), 1.0)
    bx, by, bz = (_Waves.draw(rng, 4, (2 * np.pi / 45.0, 2 * np.pi / 20.0), 0.35) for _ in range(3))
    sulcal_depth = float(rng.uniform(16.0, 19.0))
    sulcal_depth_field = _Waves.draw(rng, 6, (2 * np.pi / 60.0, 2 * np.pi / 30.0), 0.12)
    fissure_wiggle = _Waves.draw(rng, 4, (2 * np.pi / 80.0, 2 * np.pi / 40.0), 0.6)
    fissure_depth = float(rng.uniform(24.0, 28.0))
    right, left = (float(v) for v in rng.uniform(0.85, 1.2, 2))
    ventricle_shift = _triple(rng.uniform(-2.0, 2.0, 3))
    texture = _Waves.draw(rng, 8, (2 * np.pi / 25.0, 2 * np.pi / 6.0), 1.0)
    bias_t1, bias_t2 = (_Waves.draw(rng, 4, (2 * np.pi / 400.0, 2 * np.pi / 200.0), 1.0) for _ in range(2))
    return _Anatomy(
        semi_axes=semi,
        head_shape=head_shape,
        skin=skin,
        fat=fat,
        skull=skull,
        csf=csf,
        csf_extra=csf_extra,
        cortex=cortex,
        sulci=sulci,
        sulcal_bend=(bx, by, bz),
        sulcal_depth=sulcal_depth,
        sulcal_depth_field=sulcal_depth_field,
        sulcal_halfwidth=0.75,
        fissure_wiggle=fissure_wiggle,
        fissure_depth=fissure_depth,
        ventricle_scale=(right, left),
        ventricle_shift=ventricle_shift,
        nuclei=nuclei,
        texture=texture,
        bias_t1=bias_t1,
        bias_t2=bias_t2,
    )


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    """Fraction of a voxel on the inside (positive) side of a boundary at signed ``distance`` mm from its centre.

    Exact for a plane crossing a voxel of size ``width`` face-on; 0.5 on the boundary, so labels (fraction > 0.5)
    and intensities agree.
    """
    return np.clip(distance * np.float32(1.0 / width) + np.float32(0.5), 0.0, 1.0)


def _ventricle_depth(anat: _Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Signed depth in mm inside the lateral ventricles (positive inside), approximate away from the wall.

    Each ventricle is a tube bent like a banana along y: frontal horn in front, body, atrium behind, arched (the
    ends lower), splaying laterally toward the back and upward-out in cross-section (the coronal 'butterfly').
    """
    sx, sy, sz = anat.ventricle_shift
    y0, half_length = 2.0 + sy, 24.0
    out = np.full(x.shape, -np.inf, np.float32)
    for side, scale in ((1.0, anat.ventricle_scale[0]), (-1.0, anat.ventricle_scale[1])):
        t = (y - y0) / np.float32(half_length * scale)  # -1 at the atrium, +1 at the frontal horn tip
        tc = np.clip(t, -1.0, 1.0)
        cx = 4.5 + 1.5 * tc**2 + 9.0 * np.clip(-tc, 0.0, None) ** 2
        cz = 2.0 + sz - 6.0 * tc**2
        rx = (4.0 + 2.5 * np.exp(-(((tc + 0.7) / 0.3) ** 2))) * scale
        rz = (6.5 - 2.0 * tc**2) * scale
        dx = (side * (x - sx) - cx - 0.35 * (z - cz)) / rx
        dz = (z - cz) / rz
        dy = (t - tc) * np.float32(half_length * scale / 4.0)  # rounded ends, 4 mm caps
        q = np.sqrt(dx**2 + dz**2 + dy**2)
        np.maximum(out, (1.0 - q) * np.minimum(rx, rz), out=out)
    # Keep the septum pellucidum, a ~2 mm wall between the two ventricles.
    return np.minimum(out, np.abs(x - sx) - 1.0)


def _nuclei_depth(anat: _Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Signed depth in mm inside the deep grey nuclei (both sides), approximate away from the surface."""
    out = np.full(x.shape, -np.inf, np.float32)
    for nucleus in anat.nuclei:
        (cx, cy, cz), (ax, ay, az) = nucleus.centre, nucleus.semi
        q = np.sqrt(((np.abs(x) - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2)
        np.maximum(out, (1.0 - q) * min(ax, ay, az), out=out)
    return out


def _fractions(
    anat: _Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray, voxel: float
) -> tuple[dict[Tissue, np.ndarray], np.ndarray]:
    """Tissue volume fractions at points (x, y, z) mm relative to the head centre (1D arrays of equal length).

    Layers are nested shells at fixed depths below a perturbed ellipsoidal head surface, measured along the ray
    from the centre (close to the surface normal for a head this round). Each boundary is a signed distance turned
    into a partial-volume fraction, so nested 'inside' fractions subtract into tissue fractions that sum to the
    head fraction. Also returns the deep-nuclei fraction (part of the GM fraction).
    """
    a, b, c = anat.semi_axes
    r = np.sqrt(x**2 + y**2 + z**2)
    r = np.maximum(r, np.float32(1e-3))
    ux, uy, uz = x / r, y / r, z / r
    q = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
    q = np.maximum(q, np.float32(1e-6))
    # Brains are wider at the back than at the front: narrow the front, widen the back.
    egg = 1.0 + anat.head_shape(ux, uy, uz) - 0.05 * uy * ux**2
    radius = (r / q) * egg  # head surface along this ray
    depth = radius - r
    inside_head = _ramp(depth, voxel)
    inside_fat = _ramp(depth - anat.skin, voxel)
    skull_top = anat.skin + anat.fat
    inside_skull = _ramp(depth - skull_top, voxel)
    inside_csf = _ramp(depth - (skull_top + anat.skull), voxel)
    # Depth below the brain (pial hull) surface; the CSF layer thickens a little here and there.
    brain_depth = depth - (skull_top + anat.skull + anat.csf)
    brain_depth -= anat.csf_extra.bound + anat.csf_extra(ux, uy, uz)

    # Sulci: radial sheets where a random wave field on the brain surface crosses zero, reaching a variable depth.
    # Distance to a sheet is |f| / |tangential gradient|, scaled from the surface to the current depth.
    brain_csf = brain_depth.copy()  # signed distance to the nearest CSF (positive inside the brain)
    deepest = anat.sulcal_depth * (1.0 + anat.sulcal_depth_field.bound)
    reach = deepest + anat.cortex + anat.sulcal_halfwidth + 2 * voxel
    band = (brain_depth > -voxel) & (brain_depth < reach)
    if band.any():
        # p: the point's direction projected onto a brain-sized copy of the (unperturbed) head ellipsoid, so that
        # the sheets are radial; a tangential step of 1 mm at the point moves p by `surface` mm.
        surface = np.float32(0.82) / q[band]
        px, py, pz = x[band] * surface, y[band] * surface, z[band] * surface
        # Shifting the sample point in proportion to depth tilts and bends the sheets.
        d = np.maximum(brain_depth[band], 0.0)
        bend = [w(px, py, pz) for w in anat.sulcal_bend]
        f, gx, gy, gz = anat.sulci.value_and_gradient(px + d * bend[0], py + d * bend[1], pz + d * bend[2])
        radial = gx * ux[band] + gy * uy[band] + gz * uz[band]
        tangential = np.maximum(gx**2 + gy**2 + gz**2 - radial**2, 0.0) * surface**2
        along_depth = gx * bend[0] + gy * bend[1] + gz * bend[2]
        typical = np.float32(np.sqrt(np.sum(anat.sulci.amp**2 * np.sum(anat.sulci.k**2, axis=1)) / 3.0))
        # The floor keeps sulci from ballooning where the field is flat (near saddles of the labyrinth).
        gradient = np.maximum(np.sqrt(tangential + along_depth**2), 0.3 * typical * surface)
        distance = np.abs(f) / gradient
        sulcal_depth = anat.sulcal_depth * (1.0 + anat.sulcal_depth_field(px, py, pz))
        below = np.maximum(brain_depth[band] - sulcal_depth, 0.0)
        # Sulci open into a V where they meet the surface CSF.
        opening = anat.sulcal_halfwidth + 1.2 * np.exp(-d * np.float32(1.0 / 2.5))
        sulcus = np.sqrt(distance**2 + below**2) - opening
        brain_csf[band] = np.minimum(brain_csf[band], sulcus)

    # The interhemispheric fissure: a deep, slightly wavy midline sheet, deepest at the front and back.
    fissure_depth = anat.fissure_depth + 6.0 * (1.0 - np.abs(uz))
    midline = np.abs(x) < 3.0 + anat.fissure_wiggle.bound + anat.cortex + 2 * voxel
    if midline.any():
        wiggle = anat.fissure_wiggle(np.float32(0.0), y[midline], z[midline])
        below = np.maximum(brain_depth[midline] - fissure_depth[midline], 0.0)
        fissure = np.sqrt((x[midline] - wiggle) ** 2 + below**2) - 1.0
        brain_csf[midline] = np.minimum(brain_csf[midline], fissure)

    inside_brain = _ramp(brain_csf, voxel)
    inside_wm = _ramp(brain_csf - anat.cortex, voxel)
    # Ventricles and nuclei sit in the white matter: take their share out of it.
    ventricle = np.minimum(_ramp(_ventricle_depth(anat, x, y, z), voxel), inside_wm)
    nuclei = np.minimum(_ramp(_nuclei_depth(anat, x, y, z), voxel), inside_wm - ventricle)
    fractions = {
        Tissue.SCALP: inside_head - inside_fat,
        Tissue.FAT: inside_fat - inside_skull,
        Tissue.SKULL: inside_skull - inside_csf,
        Tissue.CSF: inside_csf - inside_brain,
        Tissue.GM: inside_brain - inside_wm + nuclei,
        Tissue.WM: inside_wm - ventricle - nuclei,
        Tissue.VENTRICLE: ventricle,
    }
    return fractions, nuclei


def _labels_from(fractions: dict[Tissue, np.ndarray]) -> np.ndarray:
    """The tissue with the largest fraction, background where the head fills less than half the voxel."""
    tissues = list(fractions)
    stack = np.stack([fractions[t] for t in tissues])
    labels = np.asarray(tissues, np.uint8)[np.argmax(stack, axis=0)]
    labels[stack.sum(axis=0) <= 0.5] = Tissue.BACKGROUND
    return labels


def _scaled_signals(signal: Any, parameters: dict[Tissue, TissueParameters]) -> dict[Tissue, float]:
    """Each tissue's signal (``signal(tissue_parameters)``), scaled so that the brightest tissue gets FULL_SCALE."""
    signals = {tissue: signal(params) for tissue, params in parameters.items()}
    scale = FULL_SCALE / max(signals.values())
    return {tissue: s * scale for tissue, s in signals.items()}


def _smooth_unit_field(waves: _Waves, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The field scaled so that its largest magnitude over the given points is 1."""
    field = waves(x, y, z)
    peak = float(np.abs(field).max()) if field.size else 0.0
    return field / np.float32(peak) if peak > 0 else field


# Tissues whose T1, T2 and PD ``tissue_jitter`` moves (in this order of draws); the ventricles share CSF's values,
# the deep nuclei GM's, and skull and air have no signal to move.
_JITTERED = (Tissue.SCALP, Tissue.FAT, Tissue.CSF, Tissue.GM, Tissue.WM)
# Share of the jitter that all tissues take together (for T1 and for T2): relaxation times change with field
# strength mostly for every tissue alike, and independent +-15 % per tissue would often swap grey and white matter
# on a spin-echo T1w, which real scans do not do.
_JITTER_SHARED = 0.8


def _jittered_parameters(rng: np.random.Generator, jitter: float) -> dict[Tissue, TissueParameters]:
    """TISSUE_PARAMETERS with T1 and T2 times ``1 + c + e`` and PD times ``1 + e'``: ``c`` in ``+-0.8 jitter``
    shared by all tissues (one for T1, one for T2), ``e``, ``e'`` in ``+-0.2 jitter`` per tissue."""
    parameters = dict(TISSUE_PARAMETERS)
    if not jitter:
        return parameters
    shared = rng.uniform(-_JITTER_SHARED * jitter, _JITTER_SHARED * jitter, 2)
    own = rng.uniform(-(1 - _JITTER_SHARED) * jitter, (1 - _JITTER_SHARED) * jitter, (len(_JITTERED), 3))
    for tissue, (e1, e2, e_pd) in zip(_JITTERED, own):
        base = TISSUE_PARAMETERS[tissue]
        parameters[tissue] = TissueParameters(
            t1=base.t1 * float(1 + shared[0] + e1), t2=base.t2 * float(1 + shared[1] + e2), pd=base.pd * float(1 + e_pd)
        )
    parameters[Tissue.VENTRICLE] = parameters[Tissue.CSF]
    return parameters


def _gaussian_kernel(fwhm: float) -> np.ndarray:
    """A sampled, normalised Gaussian of full width at half maximum ``fwhm`` voxels, out to 3 sigma."""
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    radius = max(1, math.ceil(3.0 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return taps / taps.sum()


def _box_kernel(width: float) -> np.ndarray:
    """A box (slab) of ``width`` voxels: each tap weighs how much of its voxel the slab covers, normalised."""
    radius = max(0, math.ceil(width / 2.0 - 0.5))
    centres = np.arange(-radius, radius + 1, dtype=float)
    taps = np.clip(np.minimum(centres + 0.5, width / 2.0) - np.maximum(centres - 0.5, -width / 2.0), 0.0, None)
    return taps / taps.sum()


def _convolve_axis(volume: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Convolve with a symmetric kernel along one axis; outside the grid counts as air (zero)."""
    radius = len(kernel) // 2
    source = np.moveaxis(volume, axis, 0)
    out = source * np.float32(kernel[radius])
    for shift in range(1, min(radius, source.shape[0] - 1) + 1):
        weight = np.float32(kernel[radius + shift])
        out[shift:] += weight * source[:-shift]
        out[:-shift] += weight * source[shift:]
    return np.moveaxis(out, 0, axis)


def _blur(volume: np.ndarray, sizes: tuple[float, float, float], fwhm_mm: float, slice_mm: float) -> np.ndarray:
    """Gaussian blur of FWHM ``fwhm_mm`` along all axes, then a slab of ``slice_mm`` along the third (RAS z:
    axial slices) axis."""
    for axis, size in enumerate(sizes):
        if fwhm_mm > 0:
            volume = _convolve_axis(volume, _gaussian_kernel(fwhm_mm / size), axis)
    if slice_mm > sizes[2]:
        volume = _convolve_axis(volume, _box_kernel(slice_mm / sizes[2]), 2)
    return np.ascontiguousarray(volume, dtype=np.float32)


def _sequence(value: Sequence[float], name: str) -> tuple[float, float]:
    tr, te = (float(v) for v in value)
    if not (tr > 0 and te >= 0):
        raise ValueError(f"{name} needs (TR, TE) with TR > 0 and TE >= 0 ms, got {value!r}")
    return tr, te


def _stored_as(array: np.ndarray, affine: np.ndarray, axcodes: str) -> tuple[np.ndarray, np.ndarray]:
    """The array and affine in the voxel order ``axcodes``, every voxel at its world position (nibabel's
    ``as_reoriented``)."""
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(axcodes)))
    image = nib.Nifti1Image(array, affine).as_reoriented(transform)
    return np.ascontiguousarray(np.asanyarray(image.dataobj)), image.affine


def make_phantom(
    seed: int = 0,
    shape: Sequence[int] = MNI_SHAPE,
    spacing: float | Sequence[float] = 1.0,
    axcodes: str = "RAS",
    noise: float = 0.0,
    bias: float = 0.0,
    *,
    t1w_sequence: Sequence[float] = T1W_SEQUENCE,
    t2w_sequence: Sequence[float] = T2W_SEQUENCE,
    t1w_inversion: float | None = None,
    tissue_jitter: float = 0.0,
    skull_strip: bool = False,
    blur_mm: float = 0.0,
    slice_thickness_mm: float = 0.0,
) -> Phantom:
    """One synthetic subject on the grid ``shape`` (given in RAS order) with voxel size ``spacing`` mm.

    The head is centred on the grid (:func:`mni_affine`); ``seed`` fixes the anatomy (the same seed gives the same
    head on any grid and with any acquisition below) and the noise. ``axcodes`` (e.g. ``"LPS"``, ``"PIR"``)
    reorders the arrays and the affine so that every voxel keeps its world position. ``noise`` is the Rician noise
    sigma as a fraction of the image's maximum (0: none, and air stays exactly 0). ``bias`` is the amplitude of a
    smooth multiplicative bias field, ``1 + bias * b(x)`` with ``|b| <= 1``, drawn separately for each contrast.

    Within each tissue a smooth texture varies the signal by a few percent.

    The acquisition (the defaults give every subject the same one):

    - ``t1w_sequence``, ``t2w_sequence``: ``(TR, TE)`` in ms of the spin echoes (:func:`spin_echo`).
    - ``t1w_inversion``: TI in ms: the T1w becomes an MPRAGE-like inversion recovery (:func:`inversion_recovery`)
      with ``t1w_sequence``'s TR and TE.
    - ``tissue_jitter``: relaxation times and proton densities differ per subject (as between 1.5 T and 3 T
      scanners and between people): each tissue's T1 and T2 are multiplied by ``1 + c + e`` with ``c`` shared by
      all tissues within ``+-0.8 * tissue_jitter`` and ``e`` per tissue within ``+-0.2 * tissue_jitter``, its PD by
      ``1 + e'`` (``e'`` likewise), so no factor leaves ``1 +- tissue_jitter``. Drawn from the subject's generator
      after the anatomy and the noise, so a seed keeps its head and its noise.
    - ``skull_strip``: a brain-extracted scan: everything outside :data:`BRAIN_TISSUES` (scalp, fat, skull, and
      the noise in air) is 0 in both images, and background in the labels.
    - ``blur_mm``: a Gaussian blur of this full width at half maximum (mm) along every axis: lower resolution and
      partial volume (``w`` mm looks roughly like ``w`` mm voxels).
    - ``slice_thickness_mm``: thick axial slices: every voxel averages a slab this thick along the superior axis
      (on the unchanged grid, as a thick-slice scan looks after resampling to thin slices).

    Order: signal, bias, blur, noise, brain extraction. The labels stay the sharp ground truth (only
    ``skull_strip`` changes them). :attr:`Phantom.parameters` records all of it, the jittered tissue values too.

    >>> ph = make_phantom(seed=3, shape=(48, 56, 40), spacing=4.0, axcodes="LPS")
    >>> "".join(nib.aff2axcodes(ph.affine)), float(ph.t1.min())
    ('LPS', 0.0)
    >>> stripped = make_phantom(seed=3, shape=(48, 56, 40), spacing=4.0, skull_strip=True, t1w_inversion=900.0,
    ...                         t1w_sequence=(2000.0, 3.0))
    >>> sorted(Tissue(t).name for t in np.unique(stripped.labels))
    ['BACKGROUND', 'CSF', 'GM', 'VENTRICLE', 'WM']
    """
    if noise < 0 or not 0 <= bias <= 1:
        raise ValueError(f"need noise >= 0 and 0 <= bias <= 1, got noise={noise}, bias={bias}")
    if not 0 <= tissue_jitter < 0.5 or blur_mm < 0 or slice_thickness_mm < 0:
        raise ValueError(
            f"need 0 <= tissue_jitter < 0.5, blur_mm >= 0 and slice_thickness_mm >= 0, got {tissue_jitter}, "
            f"{blur_mm}, {slice_thickness_mm}"
        )
    t1w_sequence, t2w_sequence = _sequence(t1w_sequence, "t1w_sequence"), _sequence(t2w_sequence, "t2w_sequence")
    if t1w_inversion is not None:
        t1w_inversion = float(t1w_inversion)
        if not 0 < t1w_inversion < t1w_sequence[0]:
            raise ValueError(f"t1w_inversion needs 0 < TI < TR = {t1w_sequence[0]} ms, got {t1w_inversion}")
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape needs 3 positive sizes, got {shape}")
    sizes = _as_triple(spacing, "spacing")
    axcodes = axcodes.upper()
    rng = np.random.default_rng(seed)
    anat = _draw_anatomy(rng)
    # The tissue jitter is drawn after everything the default acquisition draws (anatomy, then noise), so that it
    # changes neither: the noise gets its own copy of the generator, and the generator skips the noise's draws.
    noise_rng = copy.deepcopy(rng) if tissue_jitter else rng
    if tissue_jitter and noise:
        for _ in range(4):  # real and imaginary part of each contrast
            rng.standard_normal(shape, dtype=np.float32)
    tissues = _jittered_parameters(rng, tissue_jitter)

    # Only voxels near or inside the head need any work; the rest is air.
    axes = [((np.arange(n) - (n - 1) / 2.0) * s).astype(np.float32) for n, s in zip(shape, sizes)]
    a, b, c = anat.semi_axes
    margin = 1.0 + anat.head_shape.bound + 0.05 + max(sizes) / min(anat.semi_axes)
    q2 = (axes[0][:, None, None] / a) ** 2 + (axes[1][None, :, None] / b) ** 2 + (axes[2][None, None, :] / c) ** 2
    head = q2 < np.float32(margin**2)
    ix, iy, iz = np.nonzero(head)
    x, y, z = axes[0][ix], axes[1][iy], axes[2][iz]

    voxel = float(np.mean(sizes))
    fractions, nuclei = _fractions(anat, x, y, z, voxel)
    texture = 1.0 + np.float32(0.04) * _smooth_unit_field(anat.texture, x, y, z)

    tr1, te1 = t1w_sequence
    if t1w_inversion is None:
        t1w_signal = lambda params: spin_echo(params, tr1, te1)  # noqa: E731
    else:
        t1w_signal = lambda params: inversion_recovery(params, tr1, t1w_inversion, te1)  # noqa: E731
    t2w_signal = lambda params: spin_echo(params, *t2w_sequence)  # noqa: E731

    images = []
    for signal_of, bias_waves in ((t1w_signal, anat.bias_t1), (t2w_signal, anat.bias_t2)):
        values = _scaled_signals(signal_of, tissues)
        signal = np.zeros(x.shape, np.float32)
        for tissue, value in values.items():
            if value > 0 and tissue in fractions:
                signal += fractions[tissue] * np.float32(value)
        # Deep nuclei are grey matter crossed by myelinated fibres: their signal lies between GM and WM.
        signal += nuclei * np.float32(NUCLEI_WM_SHARE * (values[Tissue.WM] - values[Tissue.GM]))
        signal *= texture
        if bias:
            signal *= 1.0 + np.float32(bias) * _smooth_unit_field(bias_waves, x, y, z)
        volume = np.zeros(shape, np.float32)
        volume[head] = signal
        if blur_mm or slice_thickness_mm:
            volume = _blur(volume, sizes, blur_mm, slice_thickness_mm)
        images.append(volume)

    labels = np.zeros(shape, np.uint8)
    labels[head] = _labels_from(fractions)

    if noise:
        for volume in images:
            sigma = np.float32(noise * volume.max())
            real = volume + sigma * noise_rng.standard_normal(shape, dtype=np.float32)
            imaginary = sigma * noise_rng.standard_normal(shape, dtype=np.float32)
            volume[...] = np.sqrt(real**2 + imaginary**2)

    if skull_strip:
        outside = ~np.isin(labels, BRAIN_TISSUES)
        for volume in (*images, labels):
            volume[outside] = 0

    affine = mni_affine(shape, sizes)
    t1, t2 = images
    if tuple(axcodes) != ("R", "A", "S"):
        t1, new_affine = _stored_as(t1, affine, axcodes)
        t2 = _stored_as(t2, affine, axcodes)[0]
        labels = _stored_as(labels, affine, axcodes)[0]
        affine = new_affine
    parameters = {
        "seed": int(seed),
        "shape": list(shape),
        "spacing": list(sizes),
        "axcodes": axcodes,
        "noise": float(noise),
        "bias": float(bias),
        "t1w_sequence": list(t1w_sequence),
        "t2w_sequence": list(t2w_sequence),
        "t1w_inversion": t1w_inversion,
        "tissue_jitter": float(tissue_jitter),
        "skull_strip": bool(skull_strip),
        "blur_mm": float(blur_mm),
        "slice_thickness_mm": float(slice_thickness_mm),
        "tissues": {
            tissue.name: {"t1": p.t1, "t2": p.t2, "pd": p.pd} for tissue, p in tissues.items() if p.pd > 0
        },
    }
    return Phantom(t1=t1, t2=t2, labels=labels, affine=affine, parameters=parameters)


# --------------------------------------------------------------------------------------------------------------------
# Files


def write_subjects(
    out_dir: str | Path,
    n_subjects: int = 3,
    seed: int = 0,
    shape: Sequence[int] = MNI_SHAPE,
    spacing: float | Sequence[float] = 1.0,
    axcodes: str = "RAS",
    noise: float = 0.0,
    bias: float = 0.0,
    png: bool = False,
) -> list[dict[str, Path]]:
    """Write ``n_subjects`` phantoms as NIfTI (and optionally PNG slices); subject ``i`` uses ``seed + i``.

    Files (gzipped NIfTI, :func:`mriganx.io.output_path`): ``out_dir/sub-XX_T1w``, ``sub-XX_T2w``, ``sub-XX_labels``
    with ``XX`` = 01, 02, ... (float32 intensities, uint8 labels; qform and sform both hold the affine with code 1;
    existing files are replaced). With ``png=True`` also 8-bit PNG axial slices ``out_dir/png/T1/sub-XX_slice-NNN`` and
    ``out_dir/png/T2/...`` in the slice frame (:func:`mriganx.frame.to_slices`: anterior at the top, the patient's
    right on the image's left; ``NNN`` counts slices inferior -> superior), each contrast scaled so that its 99.9th
    percentile inside the head is 255, only for slices whose head area is at least 30% of the largest. Returns per
    subject a dict with ``"t1"``, ``"t2"``, ``"labels"`` (and ``"png_t1"``, ``"png_t2"``).

    >>> import tempfile
    >>> paths = write_subjects(tempfile.mkdtemp(), n_subjects=1, shape=(48, 56, 40), spacing=4.0, png=True)
    >>> sorted(paths[0]), paths[0]["t1"].name.startswith("sub-01_T1w")
    (['labels', 'png_t1', 'png_t2', 't1', 't2'], True)
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(n_subjects):
        name = f"sub-{i + 1:02d}"
        ph = make_phantom(seed + i, shape, spacing, axcodes, noise, bias)
        paths = {key: output_path(out_dir, f"{name}_{suffix}")
                 for key, suffix in (("t1", "T1w"), ("t2", "T2w"), ("labels", "labels"))}
        save_nifti(ph.t1, ph.affine, paths["t1"], overwrite=True)
        save_nifti(ph.t2, ph.affine, paths["t2"], overwrite=True)
        save_nifti(ph.labels, ph.affine, paths["labels"], overwrite=True)
        if png:
            area = (to_slices(ph.labels, ph.affine) > 0).sum(axis=(1, 2))
            keep = np.flatnonzero(area >= 0.3 * area.max())
            inside = ph.labels > 0
            for key, volume, folder in (("png_t1", ph.t1, "T1"), ("png_t2", ph.t2, "T2")):
                png_dir = out_dir / "png" / folder
                png_dir.mkdir(parents=True, exist_ok=True)
                top = float(np.percentile(volume[inside], 99.9)) if inside.any() else 1.0
                slices = to_slices(volume, ph.affine)
                for k in keep:
                    slice_path = output_path(png_dir, f"{name}_slice-{k:03d}", ImageKind.PNG)
                    save_png(to_uint8(slices[k], 0.0, top), slice_path, overwrite=True)
                paths[key] = png_dir
        written.append(paths)
    return written
