"""The model file (``model.pt``): its fields, its version, how it is written and how it is checked.

Training writes one (:meth:`ModelFile.save`), inference reads one (:meth:`ModelFile.load`); neither knows the other.

Contract
--------
The file is ``torch.save`` of a plain dict (tensors, numbers, strings, lists, dicts), so it loads with
``torch.load(path, weights_only=True)``: a file that would need pickled code to load is refused, never run.

=====================  ================================================================================================
key                    value
=====================  ================================================================================================
``format``             ``"mriganx-model"`` (a training checkpoint says ``"mriganx-checkpoint"`` and is refused here)
``format_version``     ``3``; versions 1 (mriganx 0.1, before provenance) and 2 (before lineage) still load, newer
                       versions are refused
``frame``              ``"SPL"``: the slice frame the networks were trained in (:data:`mriganx.frame.FRAME_AXCODES`)
``model``, ``data``    the :class:`~mriganx.config.ModelConfig` and :class:`~mriganx.config.DataConfig` as dicts; checked
                       against the config limits before any network is built
``intensity``          ``{"t1": [low, high], "t2": [low, high]}``: each contrast's typical training range; a
                       translation into that contrast is written in it (:mod:`mriganx.intensity`)
``generators``         ``{"t1-to-t2": state_dict, "t2-to-t1": state_dict}`` (the weight averages when EMA was on)
``histograms``         per contrast, counts of normalised head intensities in 64 bins over [-1, 1]
``data_fingerprint``   per contrast, a hash of the training images (which data made this model)
``steps``              training steps taken
``mriganx_version``    the version that wrote the file
``provenance``         version 2: free-form plain values for the model card: training data and licences, command,
                       commit, wall time, validation numbers, intended use; ``weights_sha256`` when recorded
``lineage``            version 3: the models this one was fine-tuned from (``mriganx train --init``), nearest first;
                       ``[]`` for a model trained from scratch (and for older files). Each is what its card says (see
                       :meth:`ModelFile.fine_tuning_lineage`): name, version, licence and terms, training data, steps,
                       weights sha256, card text, and how ``--init`` named it. A model without a licence of its own
                       carries its parent's (:meth:`ModelFile.licence`)
=====================  ================================================================================================

Every check fails with a one-line :class:`~mriganx.errors.MriganxError` naming the file: not a file, not loadable
weights-only, not a model, a newer format, another frame, a missing key, a config outside its limits, intensity
ranges or weights that are not finite, a ``weights_sha256`` that does not match the weights, a malformed lineage.

>>> import tempfile, pathlib
>>> from mriganx.config import load_config
>>> from mriganx.networks import build_generator
>>> cfg = load_config("smoke")
>>> weights = {d: build_generator(cfg.model, d).state_dict() for d in Direction}
>>> model = ModelFile(cfg.model, cfg.data, {"t1": IntensityRange(0, 900), "t2": IntensityRange(0, 1000)}, weights)
>>> path = model.save(pathlib.Path(tempfile.mkdtemp()) / "model.pt")
>>> again = ModelFile.load(path)
>>> again.intensity["t2"].high, again.format_version, again.weights_sha256() == model.weights_sha256()
(1000.0, 3, True)
"""

from __future__ import annotations

import hashlib
import importlib.resources
import math
import warnings
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import mriganx
from mriganx.config import Config, DataConfig, Direction, ModelConfig, Upsampling
from mriganx.errors import MriganxError
from mriganx.frame import FRAME_AXCODES
from mriganx.intensity import IntensityRange
from mriganx.io import atomic_output

FORMAT = "mriganx-model"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
FRAME = "".join(FRAME_AXCODES)
_REQUIRED = ("model", "data", "intensity", "generators")
DEFAULT_MODEL = "default"


def shipped_path(name: str = DEFAULT_MODEL) -> Path:
    """Where a model file shipped inside the package lives (``mriganx/models/<name>.pt``, package data)."""
    return Path(str(importlib.resources.files("mriganx.models") / f"{name}.pt"))


def default_model(name: str = DEFAULT_MODEL) -> Path:
    """The shipped model file's path; a one-line error if the installation lacks it."""
    path = shipped_path(name)
    if not path.is_file():
        raise MriganxError(path, "the shipped default model is missing from this installation; reinstall mriganx or pass --model")
    return path


def shipped_models() -> list[str]:
    """The names of the models shipped inside the package (``mriganx/models/<name>.pt``), the default first."""
    names = sorted(p.name[: -len(".pt")] for p in importlib.resources.files("mriganx.models").iterdir() if p.name.endswith(".pt"))
    return sorted(names, key=lambda name: name != DEFAULT_MODEL)


def resolve(model: str | Path | None) -> Path:
    """A model named on the command line: ``None`` or ``"default"`` is the shipped default, the name of another
    shipped model (``mriganx models --list``) that model, anything else a path."""
    if model is None or str(model) == DEFAULT_MODEL:
        return default_model()
    if isinstance(model, str) and model in shipped_models() and not Path(model).exists():
        return shipped_path(model)
    return Path(model)


@dataclass
class ModelFile:
    """Everything inference needs from a trained model (see the module docstring for the file layout)."""

    model: ModelConfig
    data: DataConfig
    intensity: dict[str, IntensityRange]
    generators: dict[Direction, dict[str, torch.Tensor]]
    histograms: dict[str, list[float]] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    steps: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    mriganx_version: str = mriganx.__version__
    format_version: int = VERSION

    def weights_sha256(self) -> str:
        """A digest of both generators' weights (names, shapes and float32 values, in a fixed order)."""
        digest = hashlib.sha256()
        for direction in Direction:
            for name, tensor in sorted(self.generators[direction].items()):
                digest.update(f"{direction.value}/{name}/{tuple(tensor.shape)}".encode())
                digest.update(tensor.detach().cpu().to(torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()

    def name(self, path: str | Path = "") -> str:
        """What the model is called: the name its provenance records, else the file's name (and the model it was
        fine-tuned from)."""
        if self.provenance.get("name"):
            return str(self.provenance["name"])
        parent = f" (fine-tuned from {self.lineage[0]['name']})" if self.lineage else ""
        return f"{Path(path).name or 'model'}{parent}"

    def licence(self) -> str | None:
        """The terms these weights carry: the licence the file records, else, for a model fine-tuned from another
        (:attr:`lineage`), the parent's, which fine-tuning does not shed; ``None`` when nobody recorded any."""
        own = self.provenance.get("licence")
        if own:
            return str(own)
        parent = self.lineage[0] if self.lineage else {}
        if not parent.get("licence"):
            return None
        return (f"{parent['licence']} [inherited: fine-tuned from {parent['name']}; the terms of the fine-tuning data "
                "apply as well]")

    def terms(self) -> str | None:
        """Terms of use beside the licence (research use, citation), the file's own or inherited as the licence is."""
        own = self.provenance.get("terms")
        return str(own) if own else next((str(p["terms"]) for p in self.lineage[:1] if p.get("terms")), None)

    def training_data(self) -> str | None:
        """What the weights learnt from: the file's own record, then what each model it was fine-tuned from learnt."""
        parts = [_plain(self.provenance["training_data"])] if self.provenance.get("training_data") else []
        parts += [f"before that, as {p['name']}: {_plain(p['training_data'])}" for p in self.lineage if p.get("training_data")]
        return "; ".join(parts) or None

    def fine_tuning_lineage(self, init: str, path: str | Path = "") -> list[dict[str, Any]]:
        """The :attr:`lineage` of a model fine-tuned from this one (named ``init`` on the command line): this
        model's card, then its own lineage."""
        given = self.provenance
        parent = {
            "init": init, "name": self.name(path), "version": given.get("version"), "licence": self.licence(),
            "terms": self.terms(), "training_data": given.get("training_data"), "steps": self.steps,
            "weights_sha256": self.weights_sha256(), "mriganx_version": self.mriganx_version,
            "card": given.get("card"),
        }
        return [{key: value for key, value in parent.items() if value not in (None, "")}, *self.lineage]

    def card(self, path: str | Path = "") -> str:
        """The model card: the text the file carries (``provenance["card"]``), then the facts it records, then the
        card of each model it was fine-tuned from."""
        model, given = self.model, self.provenance
        text = str(given.get("card") or f"# {self.name(path)} (no model card recorded)")
        facts = [
            f"- network: {model.generator.value} generator, ngf {model.ngf}, {model.n_blocks} residual blocks, "
            f"{model.channels} input slice(s); in-plane resolution {self.data.in_plane_mm or 'as given'} mm",
            f"- trained {self.steps} steps with mriganx {self.mriganx_version} (model file format {self.format_version})"
            + (f", starting from {self.lineage[0]['name']}" if self.lineage else ""),
            f"- output ranges: T1w {self.intensity['t1'].to_list()}, T2w {self.intensity['t2'].to_list()}",
            f"- weights sha256: {self.weights_sha256()}",
            f"- licence: {self.licence() or 'not recorded in the model file: ask whoever trained it'}",
        ]
        for key in ("terms", "training_data", "command", "commit", "train_seconds", "threads", "machine", "torch_version"):
            value = self.terms() if key == "terms" else given.get(key)
            if value not in (None, ""):
                facts.append(f"- {key.replace('_', ' ')}: {_plain(value)}")
        for name, scores in (given.get("validation") or {}).items():
            if isinstance(scores, dict) and "model" in scores:
                ssim = scores["model"]["brain"]["ssim_mask"]
                lookup = scores.get("lookup_cheat", {}).get("brain", {}).get("ssim_mask")
                facts.append(f"- validation {name}: SSIM in brain {ssim:.3f} (per-intensity lookup, cheating: {lookup:.3f})")
        parts = [f"{text.rstrip()}\n\n## Recorded in the model file\n\n" + "\n".join(facts)]
        for parent in self.lineage:
            recorded = [f"- {key.replace('_', ' ')}: {_plain(parent[key])}" for key in
                        ("version", "init", "licence", "terms", "training_data", "steps", "weights_sha256", "mriganx_version")
                        if key in parent]
            # The parent's own headings go two levels down, under this section's.
            text = re.sub(r"^(#+) ", r"\1## ", str(parent.get("card") or "").rstrip(), flags=re.MULTILINE)
            parts.append(f"## Fine-tuned from {parent['name']} (its card, carried forward)\n\n" + "\n".join(recorded)
                         + (f"\n\n{text}" if text else ""))
        return "\n\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        plain = Config(model=self.model, data=self.data).to_dict()
        return {
            "format": FORMAT,
            "format_version": VERSION,
            "mriganx_version": self.mriganx_version,
            "frame": FRAME,
            "model": plain["model"],
            "data": plain["data"],
            "intensity": {name: rng.to_list() for name, rng in self.intensity.items()},
            "generators": {d.value: {k: v.detach().cpu() for k, v in self.generators[d].items()} for d in Direction},
            "histograms": self.histograms,
            "data_fingerprint": self.fingerprints,
            "steps": self.steps,
            "provenance": self.provenance,
            "lineage": self.lineage,
        }

    def save(self, path: str | Path, overwrite: bool = True) -> Path:
        """Write the file atomically (a reader never sees half a model)."""
        path = Path(path)
        with atomic_output(path, overwrite=overwrite) as temporary:
            torch.save(self.to_dict(), temporary)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelFile:
        """Read and check a model file, weights only (see the module docstring for what is checked)."""
        path = Path(path)
        if not path.is_file():
            raise MriganxError(path, "model file does not exist")
        try:
            with warnings.catch_warnings():
                # A file pickled with protocol > 2 (plain pickle, not torch.save) makes torch warn before it refuses
                # or reads it; the refusal, or the file's own checks, say all that matters in one line.
                warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
                payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - whatever torch raises, the file is not a model we can trust
            text = str(exc)
            pickled = "weights_only" in text or "Unsupported global" in text
            reason = "it holds pickled code or objects, refused" if pickled else f"{exc.__class__.__name__}, truncated or not a model"
            raise MriganxError(path, f"not a loadable mriganx model ({reason})") from None
        return cls.from_dict(payload, path)

    @classmethod
    def from_dict(cls, payload: Any, source: str | Path = "model") -> ModelFile:
        """Check a loaded payload and build the model file from it."""
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise MriganxError(source, "not a mriganx model file (use RUN_DIR/model.pt, not a checkpoint)")
        version = payload.get("format_version")
        if version not in READABLE_VERSIONS:
            newer = isinstance(version, int) and version > VERSION
            hint = "upgrade mriganx" if newer else "retrain it with this mriganx"
            raise MriganxError(source, f"model format version {version!r} is not one this mriganx reads ({VERSION}); {hint}")
        if payload.get("frame", FRAME) != FRAME:
            raise MriganxError(source, f"model was trained in slice frame {payload.get('frame')!r}, not {FRAME}; retrain it")
        missing = [key for key in _REQUIRED if key not in payload]
        if missing:
            raise MriganxError(source, f"model file lacks {', '.join(missing)}; it is damaged or not written by mriganx")
        settings = payload["model"]
        if isinstance(settings, dict):
            # Files written before the decoder had a choice all used transposed convolutions.
            settings = {"upsample": Upsampling.TRANSPOSED.value, **settings}
            if isinstance(settings.get("prior_smooth"), (int, float)):  # one blur for both directions before v4
                settings["prior_smooth"] = [settings["prior_smooth"]] * 2
        try:
            config = Config.from_dict({"model": settings, "data": payload["data"]}, source)
        except (TypeError, AttributeError) as exc:
            raise MriganxError(source, f"model settings are malformed ({exc})") from None
        model = cls(
            model=config.model,
            data=config.data,
            intensity=_ranges(payload["intensity"], source),
            generators=_generators(payload["generators"], source),
            histograms=dict(payload.get("histograms") or {}),
            fingerprints=dict(payload.get("data_fingerprint") or {}),
            steps=int(payload.get("steps", 0)),
            provenance=dict(payload.get("provenance") or {}),
            lineage=_lineage(payload.get("lineage"), source),
            mriganx_version=str(payload.get("mriganx_version", "unknown")),
            format_version=int(version),
        )
        recorded = model.provenance.get("weights_sha256")
        if recorded and recorded != model.weights_sha256():
            raise MriganxError(source, "weights do not match the sha256 the file records; the file is damaged")
        return model


def _ranges(values: Any, source: str | Path) -> dict[str, IntensityRange]:
    ranges = {}
    for name in ("t1", "t2"):
        pair = values.get(name) if isinstance(values, dict) else None
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(v, (int, float)) for v in pair):
            raise MriganxError(source, f"intensity range for {name} is missing or malformed")
        low, high = float(pair[0]), float(pair[1])
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise MriganxError(source, f"intensity range for {name} is not finite and increasing ({low}, {high})")
        ranges[name] = IntensityRange(low, high)
    return ranges


def _generators(values: Any, source: str | Path) -> dict[Direction, dict[str, torch.Tensor]]:
    generators = {}
    for direction in Direction:
        weights = values.get(direction.value) if isinstance(values, dict) else None
        if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
            raise MriganxError(source, f"the {direction.value} generator's weights are missing or malformed")
        for name, tensor in weights.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise MriganxError(source, f"the {direction.value} generator's {name} holds NaN or Inf; the model is broken")
        generators[direction] = weights
    return generators


def _plain(value: Any) -> str:
    """A recorded value in one line of a card: a dict's ``what`` when it has one (training data say what they were
    in it), else its items."""
    if isinstance(value, dict):
        return str(value["what"]) if "what" in value else "; ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    return str(value)


def _lineage(values: Any, source: str | Path) -> list[dict[str, Any]]:
    if values is None:  # versions 1 and 2: no lineage recorded
        return []
    if not isinstance(values, list) or not all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in values):
        raise MriganxError(source, "the lineage (the models it was fine-tuned from) is malformed; the file is damaged")
    return [dict(v) for v in values]
