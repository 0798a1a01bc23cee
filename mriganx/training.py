"""CycleGAN training: the step, the loop, checkpoints, logging and the evolution strip.

A plain PyTorch loop: MONAI's GanTrainer fits one generator and one discriminator, not the CycleGAN's two of each
with an image pool. Names follow the paper: ``g_t1_t2`` maps T1w to T2w, ``d_t2`` judges T2w images.

Run directory layout::

    RUN_DIR/config.yaml            the effective config
    RUN_DIR/model.pt               what inference needs (loads with torch.load(..., weights_only=True))
    RUN_DIR/checkpoints/last.pt    resumable state, written atomically
    RUN_DIR/evolution (PNG)        fixed slices: input | untrained | after each k epochs
    RUN_DIR/tensorboard/           scalars and image grids

>>> from mriganx.config import load_config
>>> pool = ImagePool(size=2, seed=0)
>>> pool.query(torch.zeros(3, 1, 4, 4)).shape
torch.Size([3, 1, 4, 4])
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import PatchAdversarialLoss
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import mriganx
from mriganx.config import CONTRAST_NAMES, Config, Direction, changed_settings
from mriganx.data import SliceSet, UnpairedSampler, common_size, load_slices
from mriganx.devices import autocast_dtype, pick_device
from mriganx.distributed import barrier, join, leave
from mriganx.errors import MriganxError
from mriganx.figures import grid, save_figure
from mriganx.io import ImageKind, atomic_output, output_path, to_uint8
from mriganx.memory import retain_freed_memory
from mriganx.modelfile import ModelFile, resolve
from mriganx.networks import T2W_NO_TISSUE, build_critic, build_generator, fit_prior, init_weights, masked
from mriganx.slices import centre

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "mriganx-checkpoint"
# Settings that act only when a run starts: a resumed run continues from the weights and random streams its
# checkpoint holds, so another value would be recorded in the run's config.yaml without having acted.
FIXED_AT_START = {"train.init": "--init", "train.seed": "--seed"}


def check_resume(recorded: Config, asked: Config, source: str | Path) -> None:
    """Refuse to resume a run started with ``recorded`` under settings that cannot act on a resumed run.

    >>> from mriganx.config import load_config, override
    >>> check_resume(load_config("smoke"), override(load_config("smoke"), {"train.init": "default"}), "run")
    Traceback (most recent call last):
    mriganx.errors.MriganxError: run: cannot resume with --init default: it acts only when a run starts, and this run started with no --init; drop it, or start a new --out
    """
    differ = [name for name in changed_settings(recorded, asked) if name in FIXED_AT_START]
    if differ:
        asked_, started = (", ".join(_flag(config, name) for name in differ) for config in (asked, recorded))
        raise MriganxError(source, f"cannot resume with {asked_}: it acts only when a run starts, and this run started "
                                   f"with {started}; drop it, or start a new --out")


def _flag(config: Config, dotted: str) -> str:
    section, key = dotted.split(".")
    value = config.to_dict()[section][key]
    return f"no {FIXED_AT_START[dotted]}" if value is None else f"{FIXED_AT_START[dotted]} {value}"


class ImagePool:
    """The history buffer of Shrivastava et al. 2017 used by the CycleGAN: the discriminator is updated with a
    mix of the newest fakes and older ones, which damps oscillation. Its randomness comes from its own generator so
    that it is part of the resumable state."""

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(1, generator=self.generator).item() < 0.5:
                slot = int(torch.randint(self.size, (1,), generator=self.generator))
                out.append(self.images[slot].clone())
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        stacked = torch.stack(self.images) if self.images else torch.empty(0)
        return {"images": stacked.cpu(), "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.images = [image.to(device) for image in state["images"]]
        self.generator.set_state(state["rng"])


def lr_factor(step: int, constant_steps: int, decay_steps: int) -> float:
    """The CycleGAN schedule: constant, then linear decay to zero."""
    if step < constant_steps:
        return 1.0
    return max(0.0, 1.0 - (step - constant_steps) / max(1, decay_steps))


class GeneratorPair(nn.Module):
    """Both generators and the whole generator side of a CycleGAN step in one forward pass.

    One module with one forward call per step is what DistributedDataParallel synchronises cleanly; it also keeps
    the pass structure in one place. The first passes of each generator share one batch with its identity pass:
    exact, because instance norm normalises every sample on its own.
    """

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.g_t1_t2 = build_generator(config.model, Direction.T1_TO_T2)
        self.g_t2_t1 = build_generator(config.model, Direction.T2_TO_T1)

    def forward(self, t1: torch.Tensor, t1_mask: torch.Tensor, t2: torch.Tensor, t2_mask: torch.Tensor,
                identity: bool, anchor: tuple[bool, bool] = (False, False)) -> dict[str, torch.Tensor]:
        n = t1.shape[0]
        out: dict[str, torch.Tensor] = {}
        # The tissue maps the translations are held near (per direction): targets, so no gradient flows into them.
        with torch.no_grad():
            if anchor[0]:
                out["map_t2"] = masked(self.g_t1_t2.tissue_map(t1), t1_mask)
            if anchor[1]:
                out["map_t1"] = masked(self.g_t2_t1.tissue_map(t2), t2_mask)
        if identity:
            out_t2 = self.g_t1_t2(torch.cat([t1, t2]))
            out_t1 = self.g_t2_t1(torch.cat([t2, t1]))
            out["fake_t2"], out["same_t2"] = masked(out_t2[:n], t1_mask), masked(out_t2[n:], t2_mask)
            out["fake_t1"], out["same_t1"] = masked(out_t1[:n], t2_mask), masked(out_t1[n:], t1_mask)
        else:
            out["fake_t2"] = masked(self.g_t1_t2(t1), t1_mask)
            out["fake_t1"] = masked(self.g_t2_t1(t2), t2_mask)
        out["rec_t1"] = masked(self.g_t2_t1(out["fake_t2"]), t1_mask)
        out["rec_t2"] = masked(self.g_t1_t2(out["fake_t1"]), t2_mask)
        return out


class CriticPair(nn.Module):
    """Both PatchGAN critics; ``forward`` scores a batch of T1w and a batch of T2w images in one call."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.d_t1 = build_critic(config.model)
        self.d_t2 = build_critic(config.model)

    def forward(self, t1: torch.Tensor, t2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.d_t1(t1)[-1], self.d_t2(t2)[-1]


class CycleGAN:
    """The four networks, their optimisers, the pools and the loss; :meth:`step` is one training iteration.

    With ``distributed=True`` (inside ``torchrun``) the generator and critic pairs are wrapped in
    DistributedDataParallel, which averages their gradients over the ranks.
    """

    def __init__(self, config: Config, device: torch.device, distributed: bool = False) -> None:
        self.config, self.device = config, device
        retain_freed_memory()  # every step frees and re-allocates the same activations
        self.generators = GeneratorPair(config).to(device)
        self.critics = CriticPair(config).to(device)
        init_weights(self.generators)
        init_weights(self.critics)
        if config.model.prior:
            for generator in (self.generators.g_t1_t2, self.generators.g_t2_t1):
                generator.zero_last_layers()
        self.generator_step: nn.Module = self.generators
        self.critic_step: nn.Module = self.critics
        if distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.generator_step = DistributedDataParallel(self.generators, device_ids=ids)
            self.critic_step = DistributedDataParallel(self.critics, device_ids=ids)
        train = config.train
        self.amp_dtype = autocast_dtype(train.precision, device)
        # fp16 needs loss scaling to keep small gradients; bf16 has fp32's range and does not.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        if train.channels_last:
            self.generators.to(memory_format=torch.channels_last)
            self.critics.to(memory_format=torch.channels_last)
        self.opt_g = torch.optim.Adam(self.generators.parameters(), lr=train.lr, betas=train.betas)
        self.opt_d = torch.optim.Adam(self.critics.parameters(), lr=train.lr, betas=train.betas)
        self.adversarial = PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True)
        self.pool_t1 = ImagePool(train.pool_size, seed=train.seed + 1)
        self.pool_t2 = ImagePool(train.pool_size, seed=train.seed + 2)
        self.ema: dict[str, AveragedModel] = {}
        if train.ema_decay > 0:
            for name in ("g_t1_t2", "g_t2_t1"):
                self.ema[name] = AveragedModel(
                    getattr(self.generators, name), multi_avg_fn=get_ema_multi_avg_fn(train.ema_decay), use_buffers=True
                )

    def fit_priors(self, t1: torch.Tensor, t2: torch.Tensor) -> None:
        """Set both generators' tissue priors (and their weight averages') from brain intensities of each contrast."""
        blend = self.config.model.prior_blend
        knots = {"g_t1_t2": fit_prior(t1, t2, blend[0]), "g_t2_t1": fit_prior(t2, t1, blend[1], T2W_NO_TISSUE)}
        for name, (x, y) in knots.items():
            getattr(self.generators, name).prior.set_knots(x.to(self.device), y.to(self.device))
            if name in self.ema:
                self.ema[name].module.prior.set_knots(x.to(self.device), y.to(self.device))

    @property
    def networks(self) -> dict[str, nn.Module]:
        g, d = self.generators, self.critics
        return {"g_t1_t2": g.g_t1_t2, "g_t2_t1": g.g_t2_t1, "d_t1": d.d_t1, "d_t2": d.d_t2}

    def inference_generators(self) -> dict[str, nn.Module]:
        """The generators inference should use: the weight averages when EMA is on."""
        if self.ema:
            return {name: avg.module for name, avg in self.ema.items()}
        return {"g_t1_t2": self.generators.g_t1_t2, "g_t2_t1": self.generators.g_t2_t1}

    def step(self, t1: torch.Tensor, t1_mask: torch.Tensor, t2: torch.Tensor, t2_mask: torch.Tensor) -> dict[str, float]:
        """One generator update and one critic update; returns the losses."""
        train = self.config.train
        if not self.config.model.mask_background:
            t1_mask, t2_mask = torch.ones_like(t1_mask), torch.ones_like(t2_mask)
        if train.channels_last:
            t1, t2 = t1.contiguous(memory_format=torch.channels_last), t2.contiguous(memory_format=torch.channels_last)
        identity = train.identity_weight > 0
        anchor = (train.prior_weight[0] > 0, train.prior_weight[1] > 0)  # Config refuses a weight without a prior
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)
        with autocast:
            out = self.generator_step(t1, t1_mask, t2, t2_mask, identity, anchor)
            # The generators are scored by the critics' current weights; the critics do not learn from this pass.
            self.critics.requires_grad_(False)
            score_t1, score_t2 = self.critics(out["fake_t1"], out["fake_t2"])
        adv_t1 = self.adversarial(score_t1, target_is_real=True, for_discriminator=False)
        adv_t2 = self.adversarial(score_t2, target_is_real=True, for_discriminator=False)
        cycle_t1 = (out["rec_t1"] - t1).abs().mean()
        cycle_t2 = (out["rec_t2"] - t2).abs().mean()
        loss_g = adv_t1 + adv_t2 + train.lambda_cycle * (cycle_t1 + cycle_t2)
        losses = {"g/adv_t1": adv_t1, "g/adv_t2": adv_t2, "g/cycle_t1": cycle_t1, "g/cycle_t2": cycle_t2}
        if identity:
            idt_t1 = (out["same_t1"] - t1).abs().mean()
            idt_t2 = (out["same_t2"] - t2).abs().mean()
            loss_g = loss_g + train.lambda_cycle * train.identity_weight * (idt_t1 + idt_t2)
            losses.update({"g/identity_t1": idt_t1, "g/identity_t2": idt_t2})
        for side, contrast in enumerate(("t2", "t1")):  # T1w -> T2w makes T2w, T2w -> T1w makes T1w
            if anchor[side]:
                losses[f"g/prior_{contrast}"] = hold = (out[f"fake_{contrast}"] - out[f"map_{contrast}"]).abs().mean()
                loss_g = loss_g + train.prior_weight[side] * hold
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        for name, average in self.ema.items():
            average.update_parameters(getattr(self.generators, name))

        self.critics.requires_grad_(True)
        n = t1.shape[0]
        fakes_t1, fakes_t2 = self.pool_t1.query(out["fake_t1"]), self.pool_t2.query(out["fake_t2"])
        # Real and pooled fake images in one batch per critic: exact with instance norm, and one DDP forward.
        with autocast:
            score_t1, score_t2 = self.critic_step(torch.cat([t1, fakes_t1]), torch.cat([t2, fakes_t2]))
        loss_d_t1 = 0.5 * (self.adversarial(score_t1[:n], target_is_real=True, for_discriminator=True)
                           + self.adversarial(score_t1[n:], target_is_real=False, for_discriminator=True))
        loss_d_t2 = 0.5 * (self.adversarial(score_t2[:n], target_is_real=True, for_discriminator=True)
                           + self.adversarial(score_t2[n:], target_is_real=False, for_discriminator=True))
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(loss_d_t1 + loss_d_t2).backward()
        self.scaler.step(self.opt_d)
        self.scaler.update()
        losses.update({"g/total": loss_g, "d/t1": loss_d_t1, "d/t2": loss_d_t2})
        return {name: float(value.detach()) for name, value in losses.items()}


def strip_path(run_dir: Path) -> Path:
    return output_path(run_dir, "evolution", ImageKind.PNG)


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    steps: int
    seconds: float
    losses: dict[str, float]
    interrupted: bool = False

    @property
    def strip(self) -> Path:
        """The evolution strip: fixed slices before training and after each stretch of it."""
        return strip_path(self.run_dir)


class Trainer:
    """Train a CycleGAN on two folders of unpaired images.

    >>> # Trainer(load_config("smoke"), "t1_dir", "t2_dir", "run").run()   # see tests/test_training.py
    """

    def __init__(
        self,
        config: Config,
        t1_dir: str | Path,
        t2_dir: str | Path,
        run_dir: str | Path,
        resume: bool = False,
        progress: bool = True,
        step_callback: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.progress = progress
        self.step_callback = step_callback
        train = config.train
        if train.num_threads:
            torch.set_num_threads(train.num_threads)
        self.world = join(train.device)
        self.device = pick_device(train.device)
        if self.device.type == "cuda" and self.world.distributed:
            self.device = torch.device("cuda", self.world.local_rank)
        self.t1, self.t2 = common_size(load_slices(t1_dir, config.data, config.model.context_slices),
                                       load_slices(t2_dir, config.data, config.model.context_slices), config.data.pad_multiple)
        torch.manual_seed(train.seed)  # the same initial weights on every rank
        self.gan = CycleGAN(config, self.device, distributed=self.world.distributed)
        if config.model.prior and not resume:
            self.gan.fit_priors(self.t1.brain_values(), self.t2.brain_values())
        self.folders = {"t1": Path(t1_dir), "t2": Path(t2_dir)}
        self.lineage: list[dict[str, Any]] = []  # the models the generators started from, nearest first (--init)
        if train.init and not resume:
            self._start_from(train.init)
        # Each rank draws its own samples; with one process this is the plain seed.
        self.sampler = UnpairedSampler(self.t1, self.t2, config.data, seed=train.seed + 1000 * self.world.rank)
        # An epoch is one pass over the larger folder by all ranks together.
        self.steps_per_epoch = math.ceil(max(len(self.t1), len(self.t2)) / (train.batch_size * self.world.size))
        if train.steps:  # a length in steps: the same run whatever the data size or the machine's speed
            self.constant_steps = train.steps // 2
            self.decay_steps = train.steps - self.constant_steps
            self.strip_interval = max(1, math.ceil(train.steps / 10))
        else:
            self.constant_steps = train.epochs * self.steps_per_epoch
            self.decay_steps = train.epochs_decay * self.steps_per_epoch
            self.strip_interval = self.steps_per_epoch * train.strip_every_epochs
        self.total_steps = self.constant_steps + self.decay_steps
        self.stop_step = self.total_steps if train.max_steps is None else min(self.total_steps, train.max_steps)
        self.step = 0
        self.strip_columns: list[tuple[str, torch.Tensor]] = []
        self.fixed = self._fixed_slices()

    def _start_from(self, model: str) -> None:
        """Fine-tuning: both generators (and their weight averages) start from a trained model's; the critics and
        optimisers start fresh, since the model file holds only what inference needs."""
        path = resolve(model)
        init = ModelFile.load(path)
        if init.model != self.config.model:
            differ = changed_settings(Config(model=init.model), Config(model=self.config.model))
            network = [name for name in differ if name.startswith("model.")]
            raise MriganxError(path, f"--init model has other network settings ({', '.join(network)}); train it with "
                                     "its own (mriganx train adopts them when --config is not given)")
        # The parent's card rides along to the model file: weights fine-tuned from it carry its terms.
        self.lineage = init.fine_tuning_lineage(model, path)
        weights = {"g_t1_t2": init.generators[Direction.T1_TO_T2], "g_t2_t1": init.generators[Direction.T2_TO_T1]}
        for name, state in weights.items():
            getattr(self.gan.generators, name).load_state_dict(state)
            if name in self.gan.ema:
                self.gan.ema[name].module.load_state_dict(state)
        log.info("generators start from %s (%d steps)", path, init.steps)

    # -- fixed slices for the image grids and the evolution strip --------------------------------------------------
    def _fixed_slices(self) -> dict[str, torch.Tensor]:
        def pick(data: SliceSet, fractions: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
            # The slices with the most head, spread over the set, so the pictures show brain, not a skull cap.
            area = centre(data.masks).float().mean(dim=(1, 2, 3))
            order = torch.argsort(area, descending=True, stable=True)[: max(1, len(data) // 2)]
            chosen = sorted({int(order[int(f * (len(order) - 1))]) for f in fractions})
            return data.slices[chosen].to(self.device), data.masks[chosen].to(self.device)

        t1, t1_mask = pick(self.t1, (0.0, 0.5))
        t2, t2_mask = pick(self.t2, (0.0,))
        return {"t1": t1, "t1_mask": t1_mask, "t2": t2, "t2_mask": t2_mask}

    @torch.no_grad()
    def _translate_fixed(self) -> dict[str, torch.Tensor]:
        """The fixed slices translated and reconstructed (the middle slice of each stack, for pictures)."""
        g = self.gan.inference_generators()
        f = self.fixed
        fake_t2 = masked(g["g_t1_t2"](f["t1"]), f["t1_mask"])
        fake_t1 = masked(g["g_t2_t1"](f["t2"]), f["t2_mask"])
        return {
            "fake_t2": centre(fake_t2),
            "rec_t1": centre(masked(g["g_t2_t1"](fake_t2), f["t1_mask"])),
            "fake_t1": centre(fake_t1),
            "rec_t2": centre(masked(g["g_t1_t2"](fake_t1), f["t2_mask"])),
        }

    def _strip_column(self, title: str) -> None:
        out = self._translate_fixed()
        column = torch.cat([out["fake_t2"], out["fake_t1"]])[:, 0].cpu()
        self.strip_columns.append((title, torch.from_numpy(to_uint8(column.numpy()))))
        self._write_strip()

    def _write_strip(self) -> None:
        inputs = centre(torch.cat([self.fixed["t1"], self.fixed["t2"]]))[:, 0].cpu()
        columns = [("input", torch.from_numpy(to_uint8(inputs.numpy())))]
        kept = self.strip_columns
        if len(kept) > 10:  # keep the picture readable: the untrained column, then nine spread over training
            picks = np.unique(np.linspace(1, len(kept) - 1, 9).round().astype(int))
            kept = [kept[0], *[kept[i] for i in picks]]
        columns += kept
        n_rows = inputs.shape[0]
        rows = [[col[1][r].numpy() for col in columns] for r in range(n_rows)]
        n_t1 = self.fixed["t1"].shape[0]
        titles = ["T1->T2"] * n_t1 + ["T2->T1"] * (n_rows - n_t1)
        save_figure(grid(rows, [c[0] for c in columns], titles), self.strip_path)

    def _log_images(self, writer: Any) -> None:
        out = self._translate_fixed()
        f = self.fixed
        for name, parts in (("t1_t2_t1", (centre(f["t1"]), out["fake_t2"], out["rec_t1"])),
                            ("t2_t1_t2", (centre(f["t2"]), out["fake_t1"], out["rec_t2"]))):
            row = torch.cat(parts, dim=-1)  # real | translated | reconstructed
            picture = torch.cat(list(row), dim=-2)  # fixed slices stacked vertically
            writer.add_image(f"images/{name}", (picture.cpu() + 1) / 2, self.step)

    # -- checkpoints ---------------------------------------------------------------------------------------------
    @property
    def strip_path(self) -> Path:
        return strip_path(self.run_dir)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "mriganx_version": mriganx.__version__,
            "config": self.config.to_dict(),
            "data_fingerprint": {"t1": self.t1.fingerprint, "t2": self.t2.fingerprint},
            "step": self.step,
            "networks": {name: net.state_dict() for name, net in self.gan.networks.items()},
            "ema": {name: avg.state_dict() for name, avg in self.gan.ema.items()},
            "opt_g": self.gan.opt_g.state_dict(),
            "opt_d": self.gan.opt_d.state_dict(),
            "scaler": self.gan.scaler.state_dict(),
            "pool_t1": self.gan.pool_t1.state_dict(),
            "pool_t2": self.gan.pool_t2.state_dict(),
            "sampler_rng": self.sampler.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "strip": [[title, column] for title, column in self.strip_columns],
            "lineage": self.lineage,
        }

    def save_checkpoint(self) -> None:
        with atomic_output(self.checkpoint_path, overwrite=True) as temporary:
            torch.save(self.state_dict(), temporary)

    def load_checkpoint(self) -> None:
        path = self.checkpoint_path
        if not path.is_file():
            raise MriganxError(path, "no checkpoint to resume from; start without --resume")
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure here means the file is not a usable checkpoint
            raise MriganxError(path, f"cannot load checkpoint ({exc.__class__.__name__}); it is corrupt or not ours") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise MriganxError(path, "not a mriganx training checkpoint")
        if state["config"]["model"] != self.config.to_dict()["model"]:
            raise MriganxError(path, "checkpoint was trained with another network config; use the run's config.yaml")
        check_resume(Config.from_dict(state["config"], path), self.config, path)
        recorded = state.get("data_fingerprint", {})
        current = {"t1": self.t1.fingerprint, "t2": self.t2.fingerprint}
        if recorded and recorded != current:
            swapped = recorded == {"t1": current["t2"], "t2": current["t1"]}
            what = "the T1w and T2w folders are swapped" if swapped else "the training images are not the ones it started on"
            raise MriganxError(path, f"cannot resume: {what}; resume with the run's own --t1-dir and --t2-dir")
        self.step = int(state["step"])
        for name, net in self.gan.networks.items():
            net.load_state_dict(state["networks"][name])
        for name, avg in self.gan.ema.items():
            avg.load_state_dict(state["ema"][name])
        self.gan.opt_g.load_state_dict(state["opt_g"])
        self.gan.opt_d.load_state_dict(state["opt_d"])
        if state.get("scaler"):
            self.gan.scaler.load_state_dict(state["scaler"])
        self.gan.pool_t1.load_state_dict(state["pool_t1"], self.device)
        self.gan.pool_t2.load_state_dict(state["pool_t2"], self.device)
        self.sampler.generator.set_state(state["sampler_rng"])
        if self.world.rank > 0:  # the checkpoint holds rank 0's stream; the others need streams of their own
            self.sampler.generator.manual_seed(self.config.train.seed + 1000 * self.world.rank + self.step)
        torch.set_rng_state(state["torch_rng"])
        self.strip_columns = [(title, column) for title, column in state["strip"]]
        self.lineage = list(state.get("lineage") or [])

    def model_file(self) -> ModelFile:
        """What inference needs (:mod:`mriganx.modelfile`): the generators (their weight averages with EMA), the
        configs, each contrast's intensity range and histogram, and which data made it."""
        generators = self.gan.inference_generators()
        return ModelFile(
            model=self.config.model,
            data=self.config.data,
            intensity={"t1": self.t1.typical_range, "t2": self.t2.typical_range},
            generators={Direction.T1_TO_T2: generators["g_t1_t2"].state_dict(),
                        Direction.T2_TO_T1: generators["g_t2_t1"].state_dict()},
            histograms={"t1": self.t1.histogram(), "t2": self.t2.histogram()},
            fingerprints={"t1": self.t1.fingerprint, "t2": self.t2.fingerprint},
            steps=self.step,
            provenance={"training_data": self._training_data()},
            lineage=self.lineage,
        )

    def _training_data(self) -> str:
        """What the model learnt from, for its card: slice counts and the folders' names (not their paths, which
        may name people)."""
        return ", ".join(f"{CONTRAST_NAMES[key]}: {len(data)} slices from the folder '{self.folders[key].name}'"
                         for key, data in (("t1", self.t1), ("t2", self.t2))) + " (unpaired)"

    def export_model(self) -> Path:
        """Write RUN_DIR/model.pt (see :meth:`model_file`)."""
        return self.model_file().save(self.run_dir / "model.pt")

    # -- the loop ------------------------------------------------------------------------------------------------
    def _set_lr(self) -> float:
        lr = self.config.train.lr * lr_factor(self.step, self.constant_steps, self.decay_steps)
        for optimiser in (self.gan.opt_g, self.gan.opt_d):
            for group in optimiser.param_groups:
                group["lr"] = lr
        return lr

    def run(self) -> TrainResult:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        main = self.world.is_main
        if self.resume:
            self.load_checkpoint()
        elif self.checkpoint_path.exists():
            raise MriganxError(self.run_dir, "holds a training run already; pass --resume to continue it or pick a new --out")
        barrier(self.world)  # no rank may start a run that rank 0 could still refuse
        writer = None
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.checkpoint_path.parent.glob(f".{self.checkpoint_path.name}.part-*"):
                stale.unlink()  # left by a process killed while writing; never a checkpoint
            self.config.save(self.run_dir / "config.yaml")
            writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step if self.resume else None)
            if not self.strip_columns:
                self._strip_column("untrained")
        train = self.config.train
        started = time.perf_counter()
        first_step = self.step
        losses: dict[str, float] = {}
        interrupted = False
        bar = tqdm(total=self.stop_step, initial=self.step, disable=not (self.progress and main), unit="it", dynamic_ncols=True)
        previous_handler = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            while self.step < self.stop_step:
                lr = self._set_lr()
                t1, t1_mask, t2, t2_mask = (x.to(self.device) for x in self.sampler.sample(train.batch_size))
                losses = self.gan.step(t1, t1_mask, t2, t2_mask)
                if not all(math.isfinite(v) for v in losses.values()):
                    raise MriganxError(self.run_dir, f"training diverged at step {self.step} (losses {losses}); lower the learning rate")
                self.step += 1
                bar.update(1)
                if writer is not None:
                    self._observe(writer, bar, losses, lr)
                if main and self.step % train.checkpoint_every == 0:
                    self.save_checkpoint()
                if self.step_callback is not None:
                    self.step_callback(self.step, losses)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted at step %d: saving a checkpoint; continue with --resume", self.step)
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
            bar.close()
        model_path = self.run_dir / "model.pt"
        if main:
            self.save_checkpoint()
            if not interrupted:
                if self.step % self.strip_interval != 0:
                    self._strip_column(f"step {self.step}")
                self._log_images(writer)
            model_path = self.export_model()
            writer.close()
        barrier(self.world)
        leave(self.world)
        return TrainResult(self.run_dir, model_path, self.step - first_step, time.perf_counter() - started, losses, interrupted)

    def _observe(self, writer: Any, bar: Any, losses: dict[str, float], lr: float) -> None:
        """Rank 0's logging after a step: scalars, progress bar, image grids, evolution strip."""
        train = self.config.train
        epoch = self.step // self.steps_per_epoch
        if self.step % train.log_every == 0 or self.step == self.stop_step:
            for name, value in losses.items():
                writer.add_scalar(f"loss/{name}", value, self.step)
            writer.add_scalar("lr", lr, self.step)
            bar.set_postfix(G=f"{losses['g/total']:.3f}", D=f"{losses['d/t1'] + losses['d/t2']:.3f}",
                            cyc=f"{losses['g/cycle_t1'] + losses['g/cycle_t2']:.3f}", epoch=epoch)
        if self.step % train.image_every == 0:
            self._log_images(writer)
        if self.step % self.strip_interval == 0:
            self._strip_column(f"step {self.step}" if train.steps else f"epoch {epoch}")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def train(config: Config, t1_dir: str | Path, t2_dir: str | Path, run_dir: str | Path, resume: bool = False,
          progress: bool = True) -> TrainResult:
    """Train and return where the model is; the Python face of ``mriganx train``."""
    return Trainer(config, t1_dir, t2_dir, run_dir, resume=resume, progress=progress).run()
