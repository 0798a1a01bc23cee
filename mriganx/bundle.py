"""What a mriganx MONAI bundle runs: the steps around the network that its ``configs/inference.json`` names.

A bundle written by ``mriganx export MODEL --format monai-bundle -o DIR`` (:func:`mriganx.export.write_bundle`)
runs with MONAI's own bundle runner, its settings overridable as in every bundle::

    python -m monai.bundle run --config_file DIR/configs/inference.json --bundle_root DIR \\
        --input_dir SCANS --output_dir OUT [--direction t2-to-t1] [--overwrite true]

The config builds the network (``network_def``: :class:`mriganx.networks.TwoWayGenerator` from the settings it
records, :func:`network`) and its ``run`` calls :func:`run`, which loads ``models/model.pt`` into it and hands
mriganx's translator around that network to :func:`mriganx.convert.convert`, the function behind ``mriganx
convert``. So a bundle makes the decisions ``mriganx convert SCANS -o OUT`` makes, from the same code: the same
listing of ``input_dir`` (NIfTI, DICOM series folders, PNG; earlier translations passed over), the direction read
from each image when ``direction`` is ``auto`` (the default) and images that are neither T1w nor T2w refused, the
same refusals, same-name handling and overwrite rules, the same names and values on each input's own grid. It
also reports as ``convert`` does: the files written on stdout, one line ``error: <path>: <what>`` on stderr per
problem, a scan that fails does not stop the others, and the exit code is 2 when anything failed.

Every step that can fail on the user's input happens inside :func:`run`: MONAI resolves each ``@reference`` of an
expression before evaluating it and wraps whatever that raises in a traceback, so a reference such as a listing of
``input_dir`` would turn an empty folder into 60 lines of MONAI's stack instead of one line.

The bundle declares mriganx as a required package in its ``metadata.json``: MONAI runs the network, mriganx the
geometry and intensity bookkeeping around it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mriganx.config import Direction
from mriganx.convert import convert
from mriganx.errors import MriganxError
from mriganx.inference import Translator
from mriganx.modelfile import ModelFile
from mriganx.networks import TwoWayGenerator

AUTO = "auto"


def model_file(settings: Mapping[str, Any], net: TwoWayGenerator | None = None) -> ModelFile:
    """The model file a bundle's ``mriganx`` settings describe, with ``net``'s weights (or fresh ones), checked as
    every model file is (:meth:`mriganx.modelfile.ModelFile.from_dict`)."""
    net = net if net is not None else network(settings)
    generators = {Direction.T1_TO_T2.value: net.t1_to_t2.state_dict(), Direction.T2_TO_T1.value: net.t2_to_t1.state_dict()}
    return ModelFile.from_dict({**settings, "generators": generators}, "bundle settings")


def network(settings: Mapping[str, Any]) -> TwoWayGenerator:
    """The bundle's ``network_def``: both generators as the recorded model settings describe them."""
    from mriganx.config import Config

    return TwoWayGenerator(Config.from_dict({"model": settings["model"]}, "bundle settings").model)


def load_weights(net: TwoWayGenerator, path: str | Path, device: str | torch.device = "cpu") -> TwoWayGenerator:
    """``models/model.pt`` (the state dict of :class:`TwoWayGenerator`, weights only) into ``net``, on ``device``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except FileNotFoundError:
        raise MriganxError(path, "the bundle's weights are missing; export the bundle again") from None
    except Exception as exc:  # noqa: BLE001 - unreadable or of another network: either way not this bundle's weights
        raise MriganxError(path, f"not the weights of this bundle's network ({exc.__class__.__name__}); export the "
                                 "bundle again") from None
    return net.to(device).eval()


def translator(net: TwoWayGenerator, settings: Mapping[str, Any], device: str | torch.device = "cpu") -> Translator:
    """mriganx's translator around the bundle's network and settings."""
    return Translator(model_file(settings, net), device)


def run(network_def: TwoWayGenerator, ckpt_path: str | Path, settings: Mapping[str, Any], input_dir: str | Path,
        output_dir: str | Path, *, direction: str | None = AUTO, overwrite: Any = False, skip_existing: Any = False,
        confidence: Any = False, batch_size: int = 8, device: str | torch.device = "cpu") -> None:
    """The bundle's ``run``: translate every scan in ``input_dir`` into ``output_dir`` as ``mriganx convert`` does
    (see the module docstring), print what it did, and leave with exit code 2 if anything failed."""
    try:
        chosen = _direction(direction)
        flags = {name: _flag(name, value) for name, value in
                 (("overwrite", overwrite), ("skip_existing", skip_existing), ("confidence", confidence))}
        loaded = translator(load_weights(network_def, ckpt_path, device), settings, device)
        report = convert([Path(str(input_dir))], loaded, direction=chosen, output=Path(str(output_dir)),
                         batch_size=batch_size, **flags)
    except MriganxError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    for text, to_stderr in report.lines():
        print(text, file=sys.stderr if to_stderr else sys.stdout)
    if report.failed:
        raise SystemExit(2)  # MONAI's runner passes SystemExit through: the exit code, no traceback


def _direction(value: str | None) -> Direction | None:
    """``auto`` (or nothing): read from each image; otherwise one of the two directions."""
    if value is None or str(value) == AUTO:
        return None
    try:
        return Direction(str(value))
    except ValueError:
        choices = ", ".join([AUTO, *(d.value for d in Direction)])
        raise MriganxError(None, f"--direction must be one of {choices}, got {value!r}") from None


def _flag(name: str, value: Any) -> bool:
    """A yes/no setting as MONAI's command line gives it: a bool, or the text ``true``/``false`` (which MONAI's
    runner hands over as a string, so ``--overwrite false`` must not count as set)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise MriganxError(None, f"--{name} must be true or false, got {value!r}")
