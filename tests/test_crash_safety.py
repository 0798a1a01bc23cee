"""Training survives interruption: SIGINT saves a checkpoint, SIGKILL loses at most one checkpoint interval."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from mriganx.config import load_config, override
from mriganx.training import train

ROOT = Path(__file__).resolve().parents[1]


def start_training(phantom_dirs: dict[str, Path], run: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "mriganx", "train", "--t1-dir", str(phantom_dirs["t1"]), "--t2-dir",
               str(phantom_dirs["t2"]), "--out", str(run), "--config", "smoke", "--max-steps", "100000", "--device", "cpu",
               "--epochs", "50000", "--epochs-decay", "50000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A runner started in the background by a shell without job control inherits SIGINT ignored, and so would the
    # training; give it the default disposition, as a terminal's foreground process has, so that Ctrl-C is tested.
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def test_sigint_saves_a_checkpoint_and_exits_cleanly(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    process = start_training(phantom_dirs, run)
    wait_for(run / "checkpoints" / "last.pt", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr.decode()[-2000:]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] >= 4
    assert (run / "model.pt").is_file()


def test_sigkill_then_resume_continues_from_the_last_complete_checkpoint(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    process = start_training(phantom_dirs, run)
    wait_for(run / "checkpoints" / "last.pt", process)
    time.sleep(1.5)  # let it write a few more checkpoints; the kill may land mid-write
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # complete and loadable
    saved = state["step"]
    assert saved >= 4 and saved % load_config("smoke").train.checkpoint_every == 0
    config = override(load_config("smoke"), {"train.max_steps": saved + 3, "train.device": "cpu",
                                             "train.epochs": 50000, "train.epochs_decay": 50000})
    result = train(config, phantom_dirs["t1"], phantom_dirs["t2"], run, resume=True, progress=False)
    assert result.steps == 3
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == saved + 3
    assert not list((run / "checkpoints").glob(".*part*")), "partial checkpoint files are cleared"
