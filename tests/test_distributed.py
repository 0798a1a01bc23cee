"""Two-process training with torch.distributed (Gloo on CPU) and DistributedDataParallel."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from mriganx.config import load_config, override
from mriganx.training import train

RANK_SCRIPT = textwrap.dedent("""
    import hashlib, sys, torch
    from mriganx.config import load_config, override
    from mriganx.training import Trainer
    t1, t2, run, digest_dir = sys.argv[1:5]
    config = override(load_config("smoke"), {"train.max_steps": 4, "train.device": "cpu", "train.checkpoint_every": 4})
    trainer = Trainer(config, t1, t2, run, progress=False)
    steps_per_epoch = trainer.steps_per_epoch
    trainer.run()
    digest = hashlib.sha256()
    for name, net in sorted(trainer.gan.networks.items()):
        for key, value in sorted(net.state_dict().items()):
            digest.update(value.detach().cpu().numpy().tobytes())
    first = trainer.sampler.sample(1)[0]
    with open(f"{digest_dir}/rank{trainer.world.rank}.txt", "w") as handle:
        handle.write(f"{digest.hexdigest()} {steps_per_epoch} {float(first.sum()):.6f}")
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_train_in_step_and_resume_on_one(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    port = free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT, str(phantom_dirs["t1"]), str(phantom_dirs["t2"]), str(run), str(tmp_path)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
        ))
    for proc in procs:
        output = proc.communicate(timeout=300)[0].decode()
        assert proc.returncode == 0, output[-3000:]
    rank0 = (tmp_path / "rank0.txt").read_text().split()
    rank1 = (tmp_path / "rank1.txt").read_text().split()
    assert rank0[0] == rank1[0], "after DDP steps both ranks hold identical weights"
    assert rank0[2] != rank1[2], "each rank draws its own samples"
    assert rank0[1] == rank1[1], "both ranks agree on the epoch length (one pass over the data by all ranks)"
    # Only rank 0 wrote: one checkpoint, one model, one event file.
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "model.pt").is_file()
    assert len(list((run / "tensorboard").glob("events.*"))) == 1
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 4
    # A checkpoint from two ranks resumes in one process.
    config = override(load_config("smoke"), {"train.max_steps": 6, "train.device": "cpu"})
    result = train(config, phantom_dirs["t1"], phantom_dirs["t2"], run, resume=True, progress=False)
    assert result.steps == 2
