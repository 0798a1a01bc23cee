"""Recreate the shipped default model (mriganx/models/default.pt) from what the package provides.

    python scripts/train_default_model.py                       # set + training + packaging, into runs/default-model
    python scripts/train_default_model.py --package-only        # repackage runs/default-model/run/model.pt

Steps, each skipped when its output exists (so an interrupted run continues with ``--resume`` semantics):

1. the unpaired training set: 24 varied phantoms (scripts/make_default_training_set.py: T1w of the even subjects,
   T2w of the odd ones, seed 1000). ``--seed-copies N`` also links each of the seed set's slices
   (``../shared/data/seed-t1t2``: 43 T1w and 46 T2w BrainWeb-derived slices of one real-anatomy head) N times into
   the folders: the experiment of docs/results.md ("real anatomy beside the phantoms", N = 20, about a third of the
   slices drawn), whose weights would carry BrainWeb's research-use terms. The shipped model uses none (N = 0);
2. ``mriganx train --config shipped`` on it (a fixed number of steps: the result does not depend on the machine's
   speed or load);
3. packaging: the run's model.pt with its provenance and model card (docs/model-card.md, the validation numbers from
   docs/validation.json when present) written to mriganx/models/default.pt.

No real scan is read here: the validation scans (../shared/data/real-t1t2) are scored afterwards by
scripts/validate_default_model.py, and nothing about the model is chosen from them.
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
SET_SEED = 1000
SUBJECTS = 24
SEED_SET = ROOT.parent / "shared" / "data" / "seed-t1t2"
SEED_COPIES = 0  # the shipped recipe; docs/results.md's experiment used 20
SEED_FOLDERS = {"trainT1": "T1w", "trainT2": "T2w"}
CARD = ROOT / "docs" / "model-card.md"
VALIDATION = ROOT / "docs" / "validation.json"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_set(out: Path) -> Path:
    data = out / "data"
    if not (data / "parameters.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_default_training_set.py"), str(data),
                        "--subjects", str(SUBJECTS), "--seed", str(SET_SEED)], check=True)
    return data


def add_seed_slices(data: Path, seed_set: Path, copies: int) -> int:
    """Link every seed-set slice ``copies`` times into the training folders; returns the number of links."""
    if copies and not seed_set.is_dir():
        raise SystemExit(f"{seed_set}: the seed set is not there (pass --seed-set, or --seed-copies 0 for phantoms only)")
    count = 0
    for folder, contrast in SEED_FOLDERS.items():
        for png in sorted((seed_set / folder).glob("*.png")) if copies else []:
            for copy in range(copies):
                link = data / contrast / f"seed-{copy:02d}-{png.name.replace(' ', '_').replace('#', '')}"
                if not link.is_symlink():
                    link.symlink_to(png.resolve())
                count += 1
    return count


def train(data: Path, out: Path, threads: int | None, seed_copies: int) -> dict[str, Any]:
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
              "threads": torch.get_num_threads(), "resumed": resume, "seed_copies": seed_copies, "commit": commit()}
    timing.write_text(json.dumps(record, indent=1))
    return record


def package(out: Path, timing: dict[str, Any], target: Path, card: Path = CARD, validation_file: Path = VALIDATION) -> Path:
    """The run's model with everything the model card says, as the shipped model file."""
    model = ModelFile.load(out / "run" / "model.pt")
    parameters = json.loads((out / "data" / "parameters.json").read_text())
    validation = json.loads(validation_file.read_text()) if validation_file.is_file() else {}
    copies = int(timing.get("seed_copies", 0))
    phantoms = (f"{SUBJECTS} procedural head phantoms (mriganx.synthetic.draw_varied_phantom), unpaired: T1w of "
                f"{SUBJECTS // 2} subjects, T2w of {SUBJECTS // 2} others")
    if copies:
        name = "mriganx-seedmix-experiment"
        licence = ("research use under BrainWeb's terms (cite Collins et al., IEEE TMI 1998; Kwan et al., IEEE TMI "
                   "1999): trained on BrainWeb-derived slices beside the project's own phantoms")
        what = (f"{phantoms}; and the seed set's 43 T1w + 46 T2w BrainWeb-derived 181x217 slices (one simulated "
                f"head), each seen {copies} times as often as a single phantom slice; no real scan")
    else:
        name = "mriganx-default-phantoms-v1"
        licence = "Apache-2.0 (the weights were trained only on the project's own synthetic phantoms)"
        what = f"{phantoms}; no real scan, no seed-set slice"
    model.provenance = {
        "name": name,
        "licence": licence,
        "training_data": {
            "what": what,
            "seed": SET_SEED,
            "seed_copies": copies,
            "ranges": parameters.get("ranges", {}),
        },
        "config": load_config("shipped").to_dict(),
        "steps": model.steps,
        "train_seconds": round(timing.get("train_seconds", 0.0)),
        "threads": timing.get("threads"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "command": "python scripts/train_default_model.py" + (f" --seed-copies {copies}" if copies else ""),
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
    parser.add_argument("--seed-copies", type=int, default=SEED_COPIES, help="times each seed-set slice is linked in (0: phantoms only)")
    parser.add_argument("--seed-set", type=Path, default=SEED_SET)
    parser.add_argument("--card", type=Path, default=CARD, help="the model card to embed")
    parser.add_argument("--validation", type=Path, default=VALIDATION, help="validation scores to record (scripts/validate_default_model.py)")
    parser.add_argument("--package-only", action="store_true")
    parser.add_argument("--target", type=Path, default=None, help="where the packaged model goes (default: the shipped one)")
    args = parser.parse_args(argv)
    if args.package_only:
        timing = json.loads((args.out / "timing.json").read_text())
    else:
        data = make_set(args.out)
        add_seed_slices(data, args.seed_set, args.seed_copies)
        timing = train(data, args.out, args.threads, args.seed_copies)
    target = args.target or shipped_path()
    path = package(args.out, timing, target, args.card, args.validation)
    model = ModelFile.load(path)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, {model.steps} steps, sha256 {model.weights_sha256()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
