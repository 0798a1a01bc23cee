"""Score automatic contrast detection (mriganx.contrast) on every image at hand; print Markdown confusion tables.

Not a test: a measurement. Images: the seed slices (43 T1w + 46 T2w PNG), the DICOM T1 series, each scan of the real
development set (``shared/data/real-dev``) and, with ``--real``, of the real validation set, both under neutral names
so that a BIDS suffix cannot help (the rule is frozen before the validation set is scored, see the module docstring
of mriganx.contrast), randomised phantoms (T1w spin echo, gradient echo and MPRAGE-like, T2w, FLAIR, PD; whole head or
brain-extracted; random orientation, voxel size, noise and bias; each as a volume and as one axial slice) and images
that are no head at all (noise, smooth blobs, a CT-like head).

    python scripts/detection_table.py --phantoms 200 --real

The phantom generators live in tests/test_contrast.py, so that the tests and this table draw the same images.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from mriganx.contrast import detect_contrast  # noqa: E402
from mriganx.io import Image, ImageKind, load_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
COLUMNS = ("t1", "t2", None)
AXCODES = ("RAS", "LPS", "LAS", "PIR", "ASL", "SLP", "RSP", "IPL")


def generators():
    spec = importlib.util.spec_from_file_location("contrast_phantoms", ROOT / "tests" / "test_contrast.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(title: str, counts: dict[str, collections.Counter]) -> str:
    lines = [f"**{title}**", "", "| true \\ detected | T1w | T2w | undecided | n | correct |",
             "|---|---|---|---|---|---|"]
    for row, counter in counts.items():
        n = sum(counter.values())
        right = counter["t1"] if row == "T1w" else counter["t2"] if row == "T2w" else counter[None]
        lines.append(f"| {row} | {counter['t1']} | {counter['t2']} | {counter[None]} | {n} | {right / n:.0%} |")
    return "\n".join(lines) + "\n"


def label(sequence: str) -> str:
    short = sequence[:2] if sequence.startswith("t") else sequence  # t1gre and t1ir are T1w
    return {"t1": "T1w", "t2": "T2w", "flair": "FLAIR", "pd": "PD"}[short]


def seed_and_dicom() -> list[str]:
    out = []
    seed = SHARED / "seed-t1t2"
    if seed.exists():
        counts = {"T1w": collections.Counter(), "T2w": collections.Counter()}
        misses = []
        for row, folder in (("T1w", "trainT1"), ("T2w", "trainT2")):
            for path in sorted(seed.glob(f"{folder}/*.png"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0)):
                found = detect_contrast(load_image(path))
                counts[row][found.contrast] += 1
                if found.contrast != row[:2].lower():
                    misses.append(f"- {folder}/{path.name}: {found.contrast} ({found.reason}; {found.evidence})")
        out.append(table("Seed slices (8-bit PNG, BrainWeb-like, whole head)", counts))
        out.extend(misses)
    dicom = SHARED / "dicom-t1-series"
    if dicom.exists():
        image = load_image(dicom)
        found = detect_contrast(image)
        out.append(f"DICOM T1 series ({image.array.shape[0]}x{image.array.shape[1]}x{image.array.shape[2]}): "
                   f"**{found.contrast or 'undecided'}** - {found.reason or found.evidence}")
        singles = collections.Counter(
            detect_contrast(Image(array=image.array[..., k : k + 1].copy(), affine=image.affine, kind=ImageKind.DICOM,
                                  source=dicom)).contrast for k in range(image.array.shape[2]))
        out.append(f"its {image.array.shape[2]} slices one by one: T1w {singles['t1']}, T2w {singles['t2']}, "
                   f"undecided {singles[None]}\n")
    return out


def real_scans(folder: Path, title: str) -> list[str]:
    """Each scan of ``folder`` under a neutral name (its BIDS suffix cannot help), with a confusion table."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    out = [f"**{title}**", "", "| file | truth | detected | evidence / reason |", "|---|---|---|---|"]
    for path in sorted(folder.glob("*.nii*")):
        truth = path.name.split("_")[-1].split(".")[0]
        if truth == "mask":
            continue
        image = load_image(path)
        found = detect_contrast(Image(array=image.array, affine=image.affine, kind=image.kind,
                                      source=Path("scan.nii.gz")))
        counts[truth if truth in ("T1w", "T2w") else "neither"][found.contrast] += 1
        out.append(f"| {path.name} | {truth} | {found.contrast or 'undecided'} | {found.evidence}; "
                   f"{found.reason or ''} |")
    return out + ["", table(f"{title}: summary", dict(sorted(counts.items())))]


def phantoms(gen, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    sequences = ("t1", "t1gre", "t1ir", "t2", "t2", "t2", "flair", "pd")  # T1w and T2w equally often
    rows = ("T1w", "T2w", "FLAIR", "PD")
    volumes = {row: collections.Counter() for row in rows}
    slices = {row: collections.Counter() for row in rows}
    by_variant: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    misses = []
    started = time.perf_counter()
    for i in range(n):
        sequence = sequences[i % len(sequences)]
        row = label(sequence)
        stripped = bool(rng.random() < 0.5)
        tight = stripped and bool(rng.random() < 0.5)
        grid = rng.choice(["2 mm", "2x2x5 mm", "1.5 mm"], p=[0.6, 0.2, 0.2])
        shape, spacing = {"2 mm": ((91, 109, 91), 2.0), "2x2x5 mm": ((91, 109, 37), (2.0, 2.0, 5.0)),
                          "1.5 mm": ((121, 145, 121), 1.5)}[grid]
        noise, bias = float(rng.uniform(0, 0.05)), float(rng.uniform(0, 0.2))
        axcodes = AXCODES[int(rng.integers(len(AXCODES)))]
        array, affine = gen.synth_volume(100 + i, sequence, shape=shape, spacing=spacing, axcodes=axcodes,
                                         stripped=stripped, tight=tight, noise=noise, bias=bias)
        z_mm = float(rng.uniform(-5.0, 45.0))
        head = ("brain-extracted" + (" tight" if tight else "")) if stripped else "whole head"
        what = f"{sequence} {grid} {axcodes} {head}, noise {noise:.3f}, bias {bias:.2f}"
        for kind, image, counts in (("volume", gen.volume(array, affine), volumes),
                                    (f"slice z={z_mm:.0f} mm", gen.axial_slice(array, affine, z_mm), slices)):
            found = detect_contrast(image)
            counts[row][found.contrast] += 1
            variant = f"{row}, {kind.split()[0]}, {'brain-extracted' if stripped else 'whole head'}"
            by_variant[variant][found.contrast] += 1
            expected = row[:2].lower() if row in ("T1w", "T2w") else None
            if found.contrast != expected:
                misses.append(f"- {what}, {kind}: {found.contrast or 'undecided'} ({found.reason or found.evidence})")
    took = time.perf_counter() - started
    out = [table(f"Randomised phantoms, volumes ({n})", volumes),
           table(f"Randomised phantoms, one axial slice each ({n})", slices)]
    out.append("| variant | T1w | T2w | undecided |\n|---|---|---|---|")
    out.extend(f"| {v} | {c['t1']} | {c['t2']} | {c[None]} |" for v, c in sorted(by_variant.items()))
    out.append(f"\nWrong or undecided phantoms ({len(misses)}; generation and detection took {took:.0f} s):")
    out.extend(misses)
    return out


def non_heads(gen) -> list[str]:
    counts = {"not a head": collections.Counter()}
    lines = []
    shape, affine = (91, 109, 91), np.diag([2.0, 2.0, 2.0, 1.0])
    for s in range(4):
        rng = np.random.default_rng(s)
        noise = np.abs(rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.float32) * 100
        grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
        radius2 = sum(g**2 for g in grid)
        field = gen.smooth(rng.standard_normal(shape), 2.0 + 2 * s)
        blob = np.where(radius2 < 0.6, np.maximum(500 + field / field.std() * 100, 0), 0).astype(np.float32)
        dome = np.where(radius2 < 0.6 + 0.1 * s, 1000 * (1 - radius2) ** (1 + s), 0).astype(np.float32)
        ct, ct_affine = gen._ct(20 + s)
        windowed = np.clip(ct / 80 * 255, 0, 255).astype(np.float32)  # a brain window, 0-80 HU
        for name, array, aff in (("noise", noise, affine), ("blob", blob, affine), ("dome", dome, affine),
                                 ("CT (HU)", ct, ct_affine), ("CT brain window", windowed, ct_affine)):
            for kind, image in (("volume", gen.volume(array, aff)), ("slice", gen.axial_slice(array, aff, 20.0))):
                found = detect_contrast(image)
                counts["not a head"][found.contrast] += 1
                if found.contrast:
                    lines.append(f"- {name} {s} {kind}: {found.contrast} ({found.evidence})")
    title = "Not a head: noise, smooth blobs, bright-centre domes, CT in HU and brain-windowed (4 each, volume, slice)"
    return [table(title, counts)] + lines


def timing(gen) -> str:
    array, affine = gen.synth_volume(3, "t1ir", shape=(181, 217, 181), spacing=1.0, bias=0.1)
    image = gen.volume(array, affine)
    detect_contrast(image)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        found = detect_contrast(image)
        times.append(time.perf_counter() - started)
    return (f"Time for a 181x217x181 1 mm volume (one thread): median {np.median(times):.3f} s, "
            f"min {min(times):.3f} s over 5 runs ({found.contrast}).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", action="store_true", help="also score the real validation files (once, at the end)")
    args = parser.parse_args()
    gen = generators()
    for line in seed_and_dicom():
        print(line)
    print()
    if (SHARED / "real-dev").exists():
        print("\n".join(real_scans(SHARED / "real-dev", "Real development scans (neutral names)")))
        print()
    if args.real and (SHARED / "real-t1t2").exists():
        print("\n".join(real_scans(SHARED / "real-t1t2", "Real validation scans (neutral names, scored once)")))
        print()
    if args.phantoms > 0:
        print("\n".join(phantoms(gen, args.phantoms, args.seed)))
        print()
    print("\n".join(non_heads(gen)))
    print()
    print(timing(gen))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
