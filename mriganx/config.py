"""One typed configuration object, loaded from YAML in ``configs/`` and overridden from the command line.

Shipped configs: ``default`` (the CycleGAN paper's settings), ``cpu`` (learns the T1w/T2w contrast in tens of minutes
on two CPU cores) and ``smoke`` (tiny, for tests). ``--config`` takes one of those names or a path to a YAML file;
keys that a file leaves out keep the defaults of the dataclasses below.

>>> cfg = load_config("smoke")
>>> cfg.model.ngf <= 8
True
>>> override(cfg, {"train.batch_size": 3}).train.batch_size
3
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from mriganx.errors import MriganxError


class GeneratorKind(str, Enum):
    RESNET = "resnet"


class Upsampling(str, Enum):
    """How the generator's decoder doubles the image size."""

    RESIZE = "resize"  # nearest-neighbour resize, then a 3x3 convolution: no checkerboard (Odena et al., Distill 2016)
    TRANSPOSED = "transposed"  # stride-2 transposed convolutions, the paper's; model files from before the choice


# The two contrasts as mriganx keys them ("t1", "t2") and as BIDS and people name them.
CONTRAST_NAMES = {"t1": "T1w", "t2": "T2w"}


class Direction(str, Enum):
    T1_TO_T2 = "t1-to-t2"
    T2_TO_T1 = "t2-to-t1"

    @property
    def target(self) -> str:
        return "t2" if self is Direction.T1_TO_T2 else "t1"

    @property
    def source(self) -> str:
        return "t1" if self is Direction.T1_TO_T2 else "t2"

    @property
    def names(self) -> tuple[str, str]:
        """Source and target contrast as named in BIDS (``("T1w", "T2w")`` for t1-to-t2)."""
        return CONTRAST_NAMES[self.source], CONTRAST_NAMES[self.target]

    @property
    def reverse(self) -> Direction:
        """The way back (the other generator of the pair)."""
        return Direction.T2_TO_T1 if self is Direction.T1_TO_T2 else Direction.T1_TO_T2


class ExportFormat(str, Enum):
    """What ``mriganx export`` writes (:mod:`mriganx.export`)."""

    MONAI_BUNDLE = "monai-bundle"
    TORCHSCRIPT = "torchscript"
    ONNX = "onnx"


class OutputFormat(str, Enum):
    """Which files a translation is written as: NIfTI (any input), a DICOM series (DICOM inputs only), or both."""

    NIFTI = "nifti"
    DICOM = "dicom"
    BOTH = "both"

    @property
    def nifti(self) -> bool:
        return self is not OutputFormat.DICOM

    @property
    def dicom(self) -> bool:
        return self is not OutputFormat.NIFTI


class Precision(str, Enum):
    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class IntensityScale(str, Enum):
    """How evaluation scales translation and target to [0, 1] (see mriganx.evaluation)."""

    AUTO = "auto"
    EIGHT_BIT = "8bit"
    ROBUST = "robust"


@dataclass
class ModelConfig:
    generator: GeneratorKind = GeneratorKind.RESNET
    ngf: int = 64
    n_blocks: int = 9
    pointwise: int = 0  # width of the generator's per-pixel intensity path; 0 = the paper's generator
    head_kernel: int = 7  # the generator's last convolution (the paper's 7x7; on CPUs a 1-channel 7x7 is slow)
    # Transposed convolutions whose kernel does not divide by their stride overlap unevenly and print a fine grid on
    # the output, which on real scans cost more SSIM than the correction gained (docs/results.md, the ablation table).
    upsample: Upsampling = Upsampling.RESIZE
    ndf: int = 64
    d_layers: int = 3
    # Air gives no signal in any contrast: where the input is background the output is set to background, so the
    # networks spend their capacity on the head (see mriganx.intensity.head_mask for the rule).
    mask_background: bool = True
    # 2.5D: each slice travels with its k neighbours above and below as extra channels, and the networks translate
    # and judge the whole (2k+1)-slice stack; 0 = plain 2D (see mriganx.slices.with_context).
    context_slices: int = 0
    # The generator corrects a calibrated tissue map (mriganx.networks.TissuePrior, fitted on the training data)
    # instead of drawing the translation from nothing; False = the paper's generator.
    prior: bool = False
    # How much of the prior is plain inversion (-x) rather than reversed quantile matching, per direction
    # (T1w -> T2w, T2w -> T1w): see mriganx.networks.fit_prior.
    prior_blend: tuple[float, float] = (0.7, 1.0)  # the shipped model's (docs/results.md, the ablation table)
    # Gaussian blur (sigma, pixels) of the input before the prior's map, per direction (T1w->T2w, T2w->T1w)
    prior_smooth: tuple[float, float] = (0.0, 0.0)
    # Edge-preserving denoising of the generator's input (mriganx.denoise), per direction (T1w -> T2w, T2w -> T1w):
    # the bilateral filter's range in units of each slice's estimated noise; 0 = off.
    denoise: tuple[float, float] = (0.0, 0.0)

    @property
    def channels(self) -> int:
        """Slices per network input: the slice and its neighbours on both sides."""
        return 2 * self.context_slices + 1


@dataclass
class DataConfig:
    lower_percentile: float = 0.0
    upper_percentile: float = 99.5
    crop_size: tuple[int, int] | None = None  # random training crops (rows, cols); None trains on whole slices
    pad_multiple: int = 4  # the generator downsamples twice
    min_head_fraction: float = 0.02  # slices whose head covers less of the slice are not used for training
    flip: bool = True  # random left-right flips
    affine_prob: float = 0.0  # probability of a small random rotation/scale per sample
    # Resample every slice in-plane to this voxel size (mm) before the networks see it, and back afterwards
    # (mriganx.slices); None keeps each image's own grid, as for a model trained on one resolution.
    in_plane_mm: float | None = None


@dataclass
class TrainConfig:
    epochs: int = 100  # at the initial learning rate
    epochs_decay: int = 100  # then linear decay to zero
    batch_size: int = 1
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lambda_cycle: float = 10.0
    # Weight of the L1 distance between each generator's output and its tissue map (models with a prior; T1w->T2w,
    # T2w->T1w): the learnt correction has to earn its departure from the calibrated map against the critic.
    prior_weight: tuple[float, float] = (0.0, 0.0)
    identity_weight: float = 0.5  # identity loss weight as a fraction of lambda_cycle
    pool_size: int = 50
    ema_decay: float = 0.0  # exponential moving average of the generator weights; 0 disables it
    seed: int = 0
    max_steps: int | None = None  # stop early at this step (the schedule stays the full run's)
    # The run's length in steps, whatever the data size: the learning rate stays constant for the first half and
    # decays linearly to zero over the second. When set, epochs and epochs_decay are not used.
    steps: int | None = None
    log_every: int = 10
    image_every: int = 200
    checkpoint_every: int = 200
    strip_every_epochs: int = 1
    device: str = "auto"
    num_threads: int | None = None
    precision: Precision = Precision.AUTO  # auto: bf16 autocast on CUDA where supported (else fp16), fp32 elsewhere
    channels_last: bool = False  # memory format for GPUs; slower on the CPUs we measured
    # Start the generators from a trained model file ("default" = the shipped one) instead of random weights: fine-
    # tuning. Its network settings must be this config's (the CLI adopts them when no --config is given).
    init: str | None = None


@dataclass
class Config:
    name: str = "default"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, Enum):
                return value.value
            if isinstance(value, tuple):
                return list(value)
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path = "<dict>") -> Config:
        sections = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
        unknown = set(data) - set(sections) - {"name"}
        if unknown:
            raise MriganxError(source, f"unknown config section(s): {', '.join(sorted(unknown))}")
        parts: dict[str, Any] = {"name": str(data.get("name", Path(str(source)).stem))}
        for key, kind in sections.items():
            parts[key] = _build(kind, data.get(key) or {}, f"{source} [{key}]")
        if any(parts["train"].prior_weight) and not parts["model"].prior:
            raise MriganxError(source, "train.prior_weight holds translations near a tissue prior: it needs model.prior")
        return cls(**parts)

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


# Allowed ranges of the numeric settings (None allowed where the field's default is None). A config file or a model
# file with a value outside them is refused in one line before anything is built from it: a huge width would
# exhaust memory, a pad multiple of 0 divide by zero, a negative batch size train on nothing.
_LIMITS: dict[str, tuple[float, float]] = {
    "ngf": (1, 512), "n_blocks": (0, 64), "pointwise": (0, 512), "head_kernel": (1, 15), "ndf": (1, 512),
    "d_layers": (1, 8), "context_slices": (0, 16),
    "lower_percentile": (0, 100), "upper_percentile": (0, 100), "pad_multiple": (1, 64), "min_head_fraction": (0, 1),
    "affine_prob": (0, 1), "in_plane_mm": (0.05, 20),
    "epochs": (0, 1e6), "epochs_decay": (0, 1e6), "steps": (1, 1e9), "batch_size": (1, 4096), "lr": (1e-12, 1.0),
    "lambda_cycle": (0, 1e4), "identity_weight": (0, 1e4), "pool_size": (0, 1e5), "ema_decay": (0, 0.99999999),
    "max_steps": (0, 1e9), "log_every": (1, 1e9), "image_every": (1, 1e9), "checkpoint_every": (1, 1e9),
    "strip_every_epochs": (1, 1e9), "num_threads": (1, 1024),
}


# Settings given once per direction (T1w -> T2w, T2w -> T1w), and the largest value each allows.
_PER_DIRECTION: dict[str, float] = {"prior_blend": 1.0, "denoise": 100.0, "prior_weight": 100.0, "prior_smooth": 8.0}


def _build(kind: type, values: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = set(values) - set(fields)
    if unknown:
        raise MriganxError(where, f"unknown key(s): {', '.join(sorted(unknown))}")
    defaults = kind()
    converted = {}
    for name, value in values.items():
        converted[name] = _coerce(getattr(defaults, name), value, f"{where} {name}")
    built = kind(**converted)
    for name in fields:
        _check_limit(getattr(built, name), name, getattr(defaults, name), where)
    if getattr(built, "head_kernel", 1) % 2 == 0:
        raise MriganxError(where, f"head_kernel must be odd, got {built.head_kernel}")
    for name, high in _PER_DIRECTION.items():
        pair = getattr(built, name, (0.0, 0.0))
        if not isinstance(pair, tuple) or len(pair) != 2 or not all(isinstance(v, (int, float)) and 0 <= v <= high for v in pair):
            raise MriganxError(where, f"{name} must be two numbers from 0 to {high:g} (T1w->T2w, T2w->T1w), got {pair!r}")
    return built


def _check_limit(value: Any, name: str, default: Any, where: str) -> None:
    if name not in _LIMITS or (value is None and default is None):
        return
    low, high = _LIMITS[name]
    integer = isinstance(default, int) or default is None and name not in ("in_plane_mm",)
    kind_ok = isinstance(value, int) and not isinstance(value, bool) if integer else isinstance(value, (int, float))
    if not kind_ok or not low <= value <= high:
        what = "a whole number" if integer else "a number"
        raise MriganxError(where, f"{name} must be {what} from {low:g} to {high:g}, got {value!r}")


def _coerce(default: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    if isinstance(default, Enum):
        try:
            return type(default)(value)
        except ValueError:
            choices = ", ".join(member.value for member in type(default))
            raise MriganxError(where, f"unknown value {value!r}; choose one of: {choices}") from None
    if isinstance(value, list):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def shipped_configs() -> list[str]:
    """Names of the configs that ship with the package."""
    files = importlib.resources.files("mriganx.configs")
    return sorted(p.name[: -len(".yaml")] for p in files.iterdir() if p.name.endswith(".yaml"))


def load_config(name_or_path: str | Path) -> Config:
    """Load a shipped config by name (``default``, ``cpu``, ``smoke``) or any YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise MriganxError(path, "config file does not exist")
        text = path.read_text()
        source: str | Path = path
    else:
        resource = importlib.resources.files("mriganx.configs") / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise MriganxError(name_or_path, f"no such config; shipped configs: {', '.join(shipped_configs())}")
        text = resource.read_text()
        source = str(name_or_path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise MriganxError(path, f"not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise MriganxError(path, "a config must be a mapping of sections")
    data.setdefault("name", path.stem)
    return Config.from_dict(data, source)


def override(config: Config, values: dict[str, Any]) -> Config:
    """Return a copy of ``config`` with dotted keys (``"train.batch_size"``) replaced; ``None`` values are ignored."""
    data = config.to_dict()
    for dotted, value in values.items():
        if value is None:
            continue
        section, key = dotted.split(".")
        data[section][key] = value
    return Config.from_dict(data, f"config {config.name}")


def changed_settings(a: Config, b: Config) -> list[str]:
    """Dotted names of the settings in which two configs differ (their names aside).

    >>> changed_settings(load_config("cpu"), override(load_config("cpu"), {"train.lr": 0.001}))
    ['train.lr']
    """
    left, right = a.to_dict(), b.to_dict()
    return [f"{section}.{key}" for section in ("model", "data", "train")
            for key in left[section] if left[section][key] != right[section].get(key)]
