"""The whole job on a fresh machine with no user data: phantoms -> training -> conversion -> evaluation -> pictures.

Synthetic subjects are generated (T1w of some, T2w of others, so the training data are truly unpaired, and one
subject held out), the ``cpu-volume`` config (``cpu`` as a 2.5D model) is trained for a wall-clock budget, the
held-out T1w volume is converted to NIfTI and scored against its true T2w, and the figure, metrics and evolution
strip are written.

>>> # run_demo(Path("mriganx-demo"), minutes=8)   # see tests/test_demo.py for a tiny end-to-end run
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mriganx.config import Config, Direction, IntensityScale, load_config, override
from mriganx.convert import convert
from mriganx.evaluation import evaluate
from mriganx.synthetic import write_subjects
from mriganx.training import CycleGAN, Trainer, pick_device


@dataclass
class DemoResult:
    out: Path
    model: Path
    source: Path
    translation: Path
    confidence: Path
    truth: Path
    metrics: dict[str, Any]
    evaluation: dict[str, Path]
    evolution: Path
    train_seconds: float
    steps: int

    def viewer_command(self) -> str:
        return f'itksnap -g "{self.source}" -o "{self.translation}" "{self.truth}" "{self.confidence}"'


def seconds_per_step(config: Config, shape: tuple[int, int]) -> float:
    """Time a few training steps of ``config`` on blank slices of ``shape`` (after one warm-up step)."""
    gan = CycleGAN(config, pick_device(config.train.device))
    batch = torch.zeros(config.train.batch_size, config.model.channels, *shape)
    mask = torch.ones_like(batch, dtype=torch.bool)
    gan.step(batch, mask, batch, mask)
    started = time.perf_counter()
    for _ in range(2):
        gan.step(batch, mask, batch, mask)
    return (time.perf_counter() - started) / 2


def run_demo(out: Path, minutes: float = 8.0, config: str | Path = "cpu-volume", subjects: int = 8, spacing: float = 2.0,
             seed: int = 0, progress: bool = True, overwrite: bool = False) -> DemoResult:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            from mriganx.errors import MriganxError

            raise MriganxError(out, "is not empty; pass --overwrite to replace an earlier demo there")
        shutil.rmtree(out)
    phantoms = out / "phantoms"
    shape = tuple(int(round(n / spacing)) for n in (181, 217, 181))
    written = write_subjects(phantoms, subjects + 1, seed, shape=shape, spacing=spacing)
    t1_dir, t2_dir = out / "train" / "T1w", out / "train" / "T2w"
    t1_dir.mkdir(parents=True)
    t2_dir.mkdir(parents=True)
    for index, subject in enumerate(written[:subjects]):
        # T1w from one half of the subjects, T2w from the other: no image pair is ever seen in training.
        key, folder = ("t1", t1_dir) if index % 2 == 0 else ("t2", t2_dir)
        shutil.copy(subject[key], folder / subject[key].name)
    held = written[subjects]

    cfg = load_config(config)
    probe = override(cfg, {"train.max_steps": None})
    padded = tuple(-(-n // cfg.data.pad_multiple) * cfg.data.pad_multiple for n in (shape[1], shape[0]))
    per_step = seconds_per_step(probe, cfg.data.crop_size or padded)
    trainer = Trainer(cfg, t1_dir, t2_dir, out / "run", progress=progress)
    steps = max(20, int(minutes * 60 / per_step))
    epochs = max(2, round(steps / trainer.steps_per_epoch))
    cfg = override(cfg, {"train.epochs": epochs // 2, "train.epochs_decay": epochs - epochs // 2,
                         "train.strip_every_epochs": max(1, epochs // 8)})
    trainer = Trainer(cfg, t1_dir, t2_dir, out / "run", progress=progress)
    result = trainer.run()

    report = convert([held["t1"]], result.model_path, Direction.T1_TO_T2, output=out, progress=False, overwrite=True,
                     confidence=True)
    if report.failed:
        raise report.failed[0]
    translation, confidence = report.written
    evaluation = evaluate(result.model_path, held["t1"], held["t2"], Direction.T1_TO_T2, out=out / "evaluation",
                          scale=IntensityScale.ROBUST, confidence=True)
    paths = evaluation.write(out / "evaluation")
    return DemoResult(out, result.model_path, held["t1"], translation, confidence, held["t2"], evaluation.summary, paths,
                      result.run_dir / "evolution.png", result.seconds, result.steps)
