"""What a mriganx MONAI bundle runs: the steps around the network that its ``configs/inference.json`` names.

A bundle written by ``mriganx export MODEL --format monai-bundle -o DIR`` (:func:`mriganx.export.write_bundle`)
runs with MONAI's own bundle runner, input and output folders overridable as in every bundle::

    python -m monai.bundle run --config_file DIR/configs/inference.json --bundle_root DIR \\
        --input_dir SCANS --output_dir OUT [--direction t2-to-t1]

The config builds the network (:class:`mriganx.networks.TwoWayGenerator`) from the settings it records
(:func:`network`), loads ``models/model.pt`` into it (:func:`load_weights`), lists the scans in ``input_dir``
(:func:`datalist`) as a MONAI ``Dataset`` and puts each through three MONAI dictionary transforms:

- :class:`ReadScand`: the file, with the geometry :mod:`mriganx.io` keeps (affine, qform/sform codes);
- :class:`Translated`: mriganx's own slice path (:meth:`mriganx.inference.Translator.translate`), the one
  ``mriganx convert`` takes, so a bundle's output equals ``mriganx convert --direction X``'s;
- :class:`SaveTranslationd`: NIfTI on the input's grid, named as ``mriganx convert`` names it, written atomically.

The bundle declares mriganx as a required package in its ``metadata.json``: MONAI runs the network, mriganx the
geometry and intensity bookkeeping around it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from mriganx.config import Direction
from mriganx.convert import describe, target_path
from mriganx.inference import Translator
from mriganx.io import find_images, load_image, save_like
from mriganx.modelfile import ModelFile
from mriganx.networks import TwoWayGenerator


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
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.to(device).eval()


def translator(net: TwoWayGenerator, settings: Mapping[str, Any], device: str | torch.device = "cpu") -> Translator:
    """mriganx's translator around the bundle's network and settings."""
    return Translator(model_file(settings, net), device)


def datalist(input_dir: str | Path) -> list[dict[str, Path]]:
    """Every scan in ``input_dir`` (NIfTI files, DICOM series folders, PNG slices), as MONAI data dictionaries."""
    return [{"image": path} for path in find_images(Path(input_dir))]


class ReadScand(MapTransform):
    """Replace each path under ``keys`` by the :class:`mriganx.io.Image` it holds (array, affine, header)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = load_image(d[key])
        return d


class Translated(MapTransform):
    """Translate the image under ``keys`` into ``output_key`` (a :class:`mriganx.inference.Translation`)."""

    def __init__(self, keys: KeysCollection, translator: Translator, direction: str | Direction,
                 output_key: str = "pred", batch_size: int = 8) -> None:
        super().__init__(keys)
        self.translator, self.direction = translator, Direction(direction)
        self.output_key, self.batch_size = output_key, batch_size

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.translator.translate(d[key], self.direction, self.batch_size)
        return d


class SaveTranslationd(MapTransform):
    """Write the translation under ``keys`` on the grid of the image under ``image_key``, into ``output_dir``, with
    the name ``mriganx convert`` gives it; the path written goes under ``<key>_path``."""

    def __init__(self, keys: KeysCollection, output_dir: str | Path, image_key: str = "image",
                 overwrite: bool = False) -> None:
        super().__init__(keys)
        self.output_dir, self.image_key, self.overwrite = Path(output_dir), image_key, overwrite

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        for key in self.key_iterator(d):
            translation = d[key]
            target = target_path(image.source, translation.direction, self.output_dir)
            d[f"{key}_path"] = save_like(translation.array, image, target, overwrite=self.overwrite,
                                         description=describe(translation.direction))
        return d
