"""Write the unpaired phantom training set of the default model: varied acquisitions, no head in both folders.

Subject ``i`` (0, 1, ..., N-1) is the phantom of seed ``S + i`` scanned with ``varied_parameters(S + i)`` (see
mriganx.synthetic.draw_varied_phantom: spin-echo or MPRAGE-like T1w, T2w timings, relaxation times per subject,
brain extraction, bias, noise, blur, thick slices). Even ``i`` give only their T1w, odd ``i`` only their T2w:

    OUT_DIR/T1w/sub-000_T1w.nii.gz, sub-002_T1w.nii.gz, ...
    OUT_DIR/T2w/sub-001_T2w.nii.gz, sub-003_T2w.nii.gz, ...
    OUT_DIR/parameters.json      the arguments, the ranges drawn from, and every subject's drawn acquisition and
                                 tissue values (enough to rebuild any file with make_phantom)

float32 NIfTI on the 1 mm 181x217x181 MNI grid (RAS) unless --shape/--spacing say otherwise. The same arguments
give the same files, bit for bit, with any --workers.

    python scripts/make_default_training_set.py runs/default-set --subjects 24 --seed 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from mriganx.frame import MNI_SHAPE
from mriganx.io import atomic_output, save_nifti
from mriganx.synthetic import VARIED_RANGES, draw_varied_phantom

CONTRASTS = ("T1w", "T2w")  # even subjects, odd subjects


def subject_file(index: int) -> Path:
    """Where subject ``index`` goes, relative to the output folder."""
    contrast = CONTRASTS[index % 2]
    return Path(contrast) / f"sub-{index:03d}_{contrast}.nii.gz"


def write_subject(out_dir: Path, index: int, seed: int, shape: tuple[int, ...], spacing: float,
                  overwrite: bool) -> dict[str, Any]:
    """Make subject ``index`` (phantom seed ``seed``), write its one contrast, return its provenance record."""
    phantom = draw_varied_phantom(seed, shape=shape, spacing=spacing)
    relative = subject_file(index)
    contrast = CONTRASTS[index % 2]
    image = phantom.t1 if contrast == "T1w" else phantom.t2
    save_nifti(image, phantom.affine, out_dir / relative, overwrite=overwrite,
               description=f"mriganx phantom seed {seed} {contrast}")
    return {"subject": relative.name.split("_")[0], "seed": seed, "contrast": contrast, "file": relative.as_posix(),
            "parameters": phantom.parameters}


def _parse_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--shape needs three positive integers like 181,217,181, got {text!r}")
    return shape  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for T1w/, T2w/ and parameters.json")
    parser.add_argument("--subjects", type=int, default=24, help="number of subjects, half per contrast (24)")
    parser.add_argument("--seed", type=int, default=1000, help="phantom seed of subject 0; subject i uses seed + i")
    parser.add_argument("--shape", type=_parse_shape, default=MNI_SHAPE, help="grid X,Y,Z in RAS (181,217,181)")
    parser.add_argument("--spacing", type=float, default=1.0, help="voxel size in mm (1.0)")
    parser.add_argument("--workers", type=int, default=1, help="processes (1); the files do not depend on it")
    parser.add_argument("--overwrite", action="store_true", help="replace files of the same names")
    args = parser.parse_args(argv)
    if args.subjects < 2:
        parser.error("--subjects needs at least 2 (one per contrast)")
    out_dir: Path = args.out_dir
    targets = [out_dir / subject_file(i) for i in range(args.subjects)] + [out_dir / "parameters.json"]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not args.overwrite:
        parser.error(f"{len(existing)} output file(s) exist, e.g. {existing[0]}; pass --overwrite to replace them")
    for contrast in CONTRASTS:
        (out_dir / contrast).mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    jobs = [(out_dir, i, args.seed + i, tuple(args.shape), args.spacing, args.overwrite) for i in range(args.subjects)]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            records = list(pool.map(write_subject, *zip(*jobs)))
    else:
        records = []
        for job in jobs:
            records.append(write_subject(*job))
            print(f"{records[-1]['file']}  ({time.perf_counter() - started:.0f} s)", flush=True)

    provenance = {
        "description": "Unpaired phantom training set of the default model (scripts/make_default_training_set.py): "
                       "subject i is make_phantom(seed + i, shape, spacing, **varied_parameters(seed + i)); even i "
                       "give their T1w, odd i their T2w.",
        "arguments": {"subjects": args.subjects, "seed": args.seed, "shape": list(args.shape),
                      "spacing": args.spacing},
        "ranges": VARIED_RANGES,
        "subjects": records,
    }
    with atomic_output(out_dir / "parameters.json", overwrite=args.overwrite) as temporary:
        temporary.write_text(json.dumps(provenance, indent=1) + "\n")
    print(f"{args.subjects} subjects in {time.perf_counter() - started:.1f} s -> {out_dir}", file=sys.stderr)
    return out_dir


if __name__ == "__main__":
    main()
