"""One row of the real-scan ablation table (docs/results.md): train a recipe, translate the two development pairs,
score them with the shared scorer.

    python scripts/ablation.py ROW_NAME --data real --set model.prior=true --set train.steps=600
    python scripts/ablation.py ROW_NAME --data real --set model.prior=true --set train.max_steps=0   # the prior alone
    python scripts/ablation.py shipped --model default                     # score a trained model, no training

``--data`` names the unpaired training folders (built from links, nothing copied):

- ``real``: the shipped model's scans (scripts/train_default_model.py: every real scan ../shared/data/real-dev allows
  training on: AOMIC 0001/0002 T1w with and without skull, TCGA-FG-6692 T1w, post-contrast T1w and T2w);
- ``real+anatomy``: those and a T2w drawn on the anatomy of each brain-extracted AOMIC T1w (mriganx.anatomy);
- ``real+seed``: those and the seed set's 43 T1w + 46 T2w BrainWeb-derived slices;
- ``user``: the user-data case of issue 22: AOMIC and FG-6692 T1w against FG-6692 T2w and the seed T2w slices.

The development pairs (TCGA-DU-7294, BraTS-GLI-00001) are never in the training folders; they are only translated
(explicit direction) and scored with ``../shared/tools/score_volumes.py`` inside their brain masks. The row is
appended to ``runs/ablation/rows.jsonl`` with the command that made it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import yaml

from mriganx.anatomy import draw_t2w
from mriganx.config import Direction, load_config, override
from mriganx.data import load_slices
from mriganx.inference import Translator
from mriganx.io import load_image, save_like, save_nifti
from mriganx.modelfile import resolve
from mriganx.training import Trainer
from train_default_model import TRAINING_SCANS  # the shipped recipe's scans: one list for both scripts
from validate_default_model import score  # the shared scorer, called one way

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEV = SHARED / "data" / "real-dev"
SEED = SHARED / "data" / "seed-t1t2"

REAL_T1, REAL_T2 = TRAINING_SCANS["T1w"], TRAINING_SCANS["T2w"]
DATA = {  # name: (T1w scans, T2w scans, seed T1w slices, seed T2w slices, T2w drawn on real anatomy)
    "real": (REAL_T1, REAL_T2, False, False, False),
    "real+anatomy": (REAL_T1, REAL_T2, False, False, True),
    "real+seed": (REAL_T1, REAL_T2, True, True, False),
    "user": (["aomic-0001_T1w", "aomic-0002_T1w", "tcga-FG-6692_T1w"], REAL_T2, False, True, False),
}
# T2w drawn on real anatomy (mriganx.anatomy): the brain-extracted T1w each is drawn on, and its seed.
ANATOMY_T2W = {"aomic-0001_desc-brain_T1w": 1, "aomic-0002_desc-brain_T1w": 2}
PAIRS = {  # name: (stem, floor T1w->T2w, floor T2w->T1w), the best answer-blind baselines of shared/data/README.md
    "DU-7294": ("tcga-DU-7294_desc-brain", 0.498, 0.555),
    "GLI-00001": ("brats-GLI-00001_desc-brain", 0.431, 0.527),
}


def write_anatomy_t2w(folder: Path, source: Path = DEV, drawings: dict[str, int] = ANATOMY_T2W) -> list[Path]:
    """Draw a T2w on each brain-extracted T1w of ``drawings`` into ``folder``, skipping those already there (the same
    seed gives the same file)."""
    written = []
    for stem, seed in drawings.items():
        target = folder / f"{stem.split('_')[0]}_acq-anatomy{seed}_desc-brain_T2w.nii.gz"
        if not target.is_file():
            t1w = load_image(source / f"{stem}.nii.gz")
            t2w = draw_t2w(t1w.array, t1w.array > 0, t1w.affine, seed)
            save_nifti(t2w, t1w.affine, target, description=f"mriganx anatomy T2w of {stem}, seed {seed}")
        written.append(target)
    return written


def build_data(name: str, out: Path) -> tuple[Path, Path]:
    """Link the recipe's scans into ``out/T1w`` and ``out/T2w``."""
    t1, t2, seed_t1, seed_t2, anatomy = DATA[name]
    for folder, stems, seed in (("T1w", t1, seed_t1 and "trainT1"), ("T2w", t2, seed_t2 and "trainT2")):
        target = out / folder
        target.mkdir(parents=True, exist_ok=True)
        sources = [DEV / f"{stem}.nii.gz" for stem in stems]
        sources += sorted((SEED / seed).glob("*.png")) if seed else []
        for source in sources:
            link = target / source.name.replace(" ", "_").replace("#", "")
            if not link.is_symlink():
                link.symlink_to(source.resolve())
    if anatomy:
        write_anatomy_t2w(out / "T2w", DEV)
    return out / "T1w", out / "T2w"


def score_dev(model: Path, out: Path) -> dict[str, float]:
    """SSIM inside the brain of the model's translation of both development pairs, both directions."""
    translator = Translator.load(model)
    scores = {}
    for pair, (stem, *_) in PAIRS.items():
        for direction, source, target in ((Direction.T1_TO_T2, "T1w", "T2w"), (Direction.T2_TO_T1, "T2w", "T1w")):
            image = load_image(DEV / f"{stem}_{source}.nii.gz")
            path = out / f"{stem}_{source}_to_{target}.nii.gz"
            path.unlink(missing_ok=True)
            save_like(translator.translate(image, direction).array, image, path)
            result = score(path, DEV / f"{stem}_{target}.nii.gz", DEV / f"{stem}_mask.nii.gz")
            scores[f"{pair} {source}->{target}"] = result["ssim_mask"]
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("row", help="the row's name (its run folder under --out)")
    parser.add_argument("--data", choices=sorted(DATA), default="real")
    parser.add_argument("--config", default="shipped")
    parser.add_argument("--prior-from", choices=sorted(DATA), default=None,
                        help="fit the tissue priors on this data set instead of the training one")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (YAML value)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "ablation")
    parser.add_argument("--model", default=None, help="score this model file (or shipped model name) instead of training")
    args = parser.parse_args(argv)
    if not DEV.is_dir():
        raise SystemExit(f"{DEV}: the real development scans are not there")
    if args.model:
        run = args.out / args.row
        run.mkdir(parents=True, exist_ok=True)
        row = {"row": args.row, "model": args.model, "scores": score_dev(resolve(args.model), run),
               "command": "python scripts/ablation.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))}
        return record(row, args.out)
    values = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    config = override(load_config(args.config), values)
    run = args.out / args.row
    t1_dir, t2_dir = build_data(args.data, args.out / f"data-{args.data}")
    started = time.time()
    trainer = Trainer(config, t1_dir, t2_dir, run, progress=False)
    if args.prior_from and config.model.prior:
        prior_t1, prior_t2 = (load_slices(d, config.data, config.model.context_slices).brain_values()
                              for d in build_data(args.prior_from, args.out / f"data-{args.prior_from}"))
        trainer.gan.fit_priors(prior_t1, prior_t2)
    result = trainer.run()
    seconds = time.time() - started
    scores = score_dev(result.model_path, run)
    row = {"row": args.row, "data": args.data, "prior_from": args.prior_from or args.data, "config": args.config,
           "set": values, "steps": result.steps,
           "train_seconds": round(seconds), "scores": scores,
           "command": "python scripts/ablation.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))}
    return record(row, args.out)


def record(row: dict, out: Path) -> int:
    with (out / "rows.jsonl").open("a") as rows:
        rows.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
