"""What each candidate speed-up buys one training iteration of a config, measured side by side in one process.

    python benchmarks/train_variants.py --config cpu --rounds 5

Each variant builds its own CycleGAN and takes a warm-up step; then the variants take turns, two timed steps each,
for ``--rounds`` rounds, so that drift in the machine's speed (it is shared) falls on all of them alike; the
median step is reported. Only changes local to one network or step can be compared this way: the variants share
one process, so process-wide settings (the allocator's, see mriganx.memory) apply to all of them alike and must be
compared across fresh processes instead. Variants that the package does not use are built here by swapping parts, so the
comparison stays honest about what did not help. Prints one line per variant with seconds per iteration, FLOPs per iteration (counted with
``torch.utils.flop_counter``) and achieved GFLOP/s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mriganx.config import Config, load_config, override
from mriganx.networks import masked
from mriganx.training import CycleGAN


def step_times(gan: CycleGAN, batch: int, channels: int, shape: tuple[int, int], steps: int) -> list[float]:
    x = torch.rand(batch, channels, *shape) * 2 - 1
    mask = torch.ones_like(x, dtype=torch.bool)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        gan.step(x, mask, x, mask)
        times.append(time.perf_counter() - started)
    return times


def instance_norm(module: nn.Module) -> None:
    """Swap the shipped per-channel GroupNorm back to InstanceNorm2d (the same arithmetic, another kernel)."""
    for name, child in module.named_children():
        if isinstance(child, nn.GroupNorm) and child.num_groups == child.num_channels:
            setattr(module, name, nn.InstanceNorm2d(child.num_channels, eps=child.eps, affine=False))
        else:
            instance_norm(child)


def fused_adam(gan: CycleGAN) -> None:
    """Adam's fused kernel (all parameters in one pass) instead of torch's CPU default, one tensor at a time."""
    train = gan.config.train
    gan.opt_g = torch.optim.Adam(gan.generators.parameters(), lr=train.lr, betas=train.betas, fused=True)
    gan.opt_d = torch.optim.Adam(gan.critics.parameters(), lr=train.lr, betas=train.betas, fused=True)


def six_generator_passes(gan: CycleGAN) -> None:
    """The straightforward step: every generator pass on its own, identity passes included (six with identity)."""
    pair = gan.generators

    def forward(t1: torch.Tensor, t1_mask: torch.Tensor, t2: torch.Tensor, t2_mask: torch.Tensor,
                identity: bool) -> dict[str, torch.Tensor]:
        out = {"fake_t2": masked(pair.g_t1_t2(t1), t1_mask), "fake_t1": masked(pair.g_t2_t1(t2), t2_mask)}
        if identity:
            out["same_t2"] = masked(pair.g_t1_t2(t2), t2_mask)
            out["same_t1"] = masked(pair.g_t2_t1(t1), t1_mask)
        out["rec_t1"] = masked(pair.g_t2_t1(out["fake_t2"]), t1_mask)
        out["rec_t2"] = masked(pair.g_t1_t2(out["fake_t1"]), t2_mask)
        return out

    pair.forward = forward  # type: ignore[method-assign]


def without_onednn(gan: CycleGAN) -> None:
    """Convolutions through PyTorch's own im2col + GEMM path instead of oneDNN."""
    step = gan.step

    def plain_step(*args: torch.Tensor) -> dict[str, float]:
        with torch.backends.mkldnn.flags(enabled=False):
            return step(*args)

    gan.step = plain_step  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=220)
    parser.add_argument("--cols", type=int, default=184)
    args = parser.parse_args()
    config = load_config(args.config)
    shape = (args.rows, args.cols)
    channels = config.model.channels

    variants: list[tuple[str, Config, Callable[[CycleGAN], None] | None]] = [
        ("shipped", config, None),
        ("InstanceNorm2d kernel", config, lambda gan: (instance_norm(gan.generators), instance_norm(gan.critics))),
        ("Adam fused", config, fused_adam),
        ("six separate generator passes", config, six_generator_passes),
        ("convolutions without oneDNN", config, without_onednn),
        ("channels_last", override(config, {"train.channels_last": True}), None),
        ("7x7 head (the paper's)", override(config, {"model.head_kernel": 7}), None),
    ]
    print(f"{args.config}: batch {config.train.batch_size}, {shape[0]}x{shape[1]}, {torch.get_num_threads()} threads")
    gans, flops = [], []
    for _, cfg, change in variants:
        torch.manual_seed(0)
        gan = CycleGAN(cfg, torch.device("cpu"))
        if change is not None:
            change(gan)
        with FlopCounterMode(display=False) as counter:  # also the warm-up step
            step_times(gan, cfg.train.batch_size, channels, shape, 1)
        gans.append(gan)
        flops.append(counter.get_total_flops())
    times: list[list[float]] = [[] for _ in variants]
    for _ in range(args.rounds):
        for index, ((_, cfg, _), gan) in enumerate(zip(variants, gans)):
            times[index] += step_times(gan, cfg.train.batch_size, channels, shape, 2)
    for (name, _, _), measured, counted in zip(variants, times, flops):
        seconds = statistics.median(measured)
        print(f"{name:30s} {seconds:.3f} s/it (best {min(measured):.3f})  {counted / 1e9:6.1f} GFLOP/it  "
              f"{counted / seconds / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
