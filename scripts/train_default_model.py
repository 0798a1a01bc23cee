"""Recreate the shipped default model (mriganx/models/default.pt) from the real scans the project may train on.

    python scripts/train_default_model.py                       # set + training + packaging, into runs/default-model
    python scripts/train_default_model.py --package-only        # repackage runs/default-model/run/model.pt

Steps, each skipped when its output exists (so an interrupted run continues with ``--resume`` semantics):

1. the unpaired training set, as links into ``../shared/data/real-dev`` (nothing copied): T1w of two healthy adults
   with and without skull (AOMIC-PIOP2 0001/0002, CC0) and the T1w and post-contrast T1w of a glioma patient with
   skull (TCGA-FG-6692, CC BY 3.0); T2w of the same patient. Never the two development pairs (TCGA-DU-7294,
   BraTS-GLI-00001), which score the model, nor anything in ``real-t1t2`` (validation);
2. ``mriganx train --config shipped`` on it: the tissue prior fitted on these scans, then a fixed number of steps
   (the result does not depend on the machine's speed or load);
3. packaging: the run's model.pt with its provenance and model card (docs/model-card.md, the validation numbers from
   docs/validation.json when present) written to mriganx/models/default.pt.

``scripts/ablation.py`` trains the same recipe and its variants and scores them on the development pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import mriganx
from mriganx.config import load_config, override
from mriganx.modelfile import ModelFile, shipped_path
from mriganx.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
REAL_DEV = ROOT.parent / "shared" / "data" / "real-dev"
TRAINING_SCANS = {  # contrast folder: the scans of real-dev the shipped model trains on
    "T1w": ["aomic-0001_T1w", "aomic-0002_T1w", "aomic-0001_desc-brain_T1w", "aomic-0002_desc-brain_T1w",
            "tcga-FG-6692_T1w", "tcga-FG-6692_ce-gadolinium_T1w"],
    "T2w": ["tcga-FG-6692_T2w"],
}
SOURCES = {
    "AOMIC-PIOP2 (OpenNeuro ds002790), subjects 0001 and 0002, T1w with and without skull": (
        "CC0; Snoek et al., Sci Data 2021; FreeSurfer outputs from carpentries-incubator/SDC-BIDS-sMRI "
        "(commit 03fb1e742c7b54e66cd093a322977b52dd63efc8)"),
    "TCGA-FG-6692 (The Cancer Imaging Archive, TCGA-LGG), T1w, post-contrast T1w, T2w with skull": (
        "CC BY 3.0; cite TCIA (Clark et al., J Digit Imaging 2013) and the TCGA-LGG collection; from the example "
        "data of neuronflow/BraTS-Toolkit (commit 0cd322fcc26a61f19c9a71fdae076f27be857766)"),
}
CARD = ROOT / "docs" / "model-card.md"
VALIDATION = ROOT / "docs" / "validation.json"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_set(out: Path, source: Path = REAL_DEV) -> Path:
    """Link the training scans into ``out/data/T1w`` and ``out/data/T2w``."""
    data = out / "data"
    for contrast, stems in TRAINING_SCANS.items():
        (data / contrast).mkdir(parents=True, exist_ok=True)
        for stem in stems:
            scan = source / f"{stem}.nii.gz"
            if not scan.is_file():
                raise SystemExit(f"{scan}: a training scan is missing (the shared real-dev folder must sit beside the checkout)")
            link = data / contrast / scan.name
            if not link.is_symlink():
                link.symlink_to(scan.resolve())
    return data


def train(data: Path, out: Path, threads: int | None) -> dict[str, Any]:
    run = out / "run"
    timing = out / "timing.json"
    if (run / "model.pt").is_file() and timing.is_file():
        return json.loads(timing.read_text())
    config = load_config("shipped")
    if threads:
        config = override(config, {"train.num_threads": threads})
    resume = (run / "checkpoints").is_dir()
    started = time.time()
    result = Trainer(config, data / "T1w", data / "T2w", run, resume=resume).run()
    if result.interrupted:
        raise SystemExit("interrupted; run the script again to continue")
    record = {"steps": result.steps, "train_seconds": result.seconds, "wall_seconds": time.time() - started,
              "threads": torch.get_num_threads(), "resumed": resume, "commit": commit()}
    timing.write_text(json.dumps(record, indent=1))
    return record


def package(out: Path, timing: dict[str, Any], target: Path, card: Path = CARD, validation_file: Path = VALIDATION) -> Path:
    """The run's model with everything the model card says, as the shipped model file."""
    model = ModelFile.load(out / "run" / "model.pt")
    validation = json.loads(validation_file.read_text()) if validation_file.is_file() else {}
    model.provenance = {
        "name": "mriganx-default-real-v4",
        "licence": ("Apache-2.0 weights, trained on real scans under CC0 (AOMIC-PIOP2) and CC BY 3.0 (TCGA via TCIA): "
                    "attribute TCIA (Clark et al., J Digit Imaging 2013) and the TCGA-LGG collection when you use them"),
        "training_data": {
            "what": "unpaired real scans: " + "; ".join(f"{folder}: {', '.join(stems)}" for folder, stems in TRAINING_SCANS.items()),
            "sources": SOURCES,
        },
        "config": load_config("shipped").to_dict(),
        "steps": model.steps,
        "train_seconds": round(timing.get("train_seconds", 0.0)),
        "threads": timing.get("threads"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "command": "python scripts/train_default_model.py",
        "commit": timing.get("commit") or commit(),
        "mriganx_version": mriganx.__version__,
        "torch_version": str(torch.__version__),
        "validation": validation,
        "weights_sha256": model.weights_sha256(),
        "card": card.read_text() if card.is_file() else "",
    }
    return model.save(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "default-model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for training (default: torch's)")
    parser.add_argument("--real-dev", type=Path, default=REAL_DEV, help="where the real development scans are")
    parser.add_argument("--card", type=Path, default=CARD, help="the model card to embed")
    parser.add_argument("--validation", type=Path, default=VALIDATION, help="validation scores to record (scripts/validate_default_model.py)")
    parser.add_argument("--package-only", action="store_true")
    parser.add_argument("--target", type=Path, default=None, help="where the packaged model goes (default: the shipped one)")
    args = parser.parse_args(argv)
    if args.package_only:
        timing = json.loads((args.out / "timing.json").read_text())
    else:
        data = make_set(args.out, args.real_dev)
        timing = train(data, args.out, args.threads)
    target = args.target or shipped_path()
    path = package(args.out, timing, target, args.card, args.validation)
    model = ModelFile.load(path)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, {model.steps} steps, sha256 {model.weights_sha256()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
