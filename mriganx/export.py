"""A trained model in the formats other systems load: TorchScript, ONNX and a MONAI bundle (``mriganx export``).

Every format is a folder (``-o DIR``), written into a temporary folder beside it and renamed into place, so a
failed export leaves nothing behind; ``--overwrite`` replaces only an earlier export (:func:`earlier_export`), and
a folder in the model's own folder (its training run) is refused:

==================  ===============================================================================================
format              what the folder holds
==================  ===============================================================================================
``torchscript``     ``t1-to-t2.ts``, ``t2-to-t1.ts``: one generator each, ``torch.jit.load`` without mriganx; the
                    boundary below rides inside each file as ``mriganx.json`` (MONAI's ``save_net_with_metadata``)
``onnx``            ``t1-to-t2.onnx``, ``t2-to-t1.onnx`` (opset :data:`ONNX_OPSET`; batch, height and width are
                    dynamic axes; the boundary in the model's ``metadata_props`` under ``mriganx``)
``monai-bundle``    the MONAI model-zoo layout (:func:`write_bundle`): ``configs/metadata.json``,
                    ``configs/inference.json``, ``models/model.pt``, ``models/model.ts``, ``docs/README.md``,
                    ``LICENSE``; run with ``python -m monai.bundle run`` (:mod:`mriganx.bundle`)
==================  ===============================================================================================

and ``mriganx.json``, **the boundary**: what the exported networks expect and return (:func:`boundary`). In short:
``float32 (batch, 2k+1, height, width)`` axial slices (rows anterior -> posterior, columns the patient's right ->
left), resampled in-plane to the model's training resolution, scaled by the volume's own robust range to [-1, 1],
padded with -1 to multiples of 4 -> the same shape in [-1, 1]; set the output to -1 where the input has no signal,
then map [-1, 1] to the target contrast's range. ``mriganx convert`` does all of that; an exported network is the
middle step only.

TorchScript is deprecated upstream in favour of ``torch.export``, but it is what MONAI bundles and MONAI Deploy
load today, so it is shipped (docs/deploy.md).

>>> # export_model("run/model.pt", ExportFormat.ONNX, Path("exported"))
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import torch

import mriganx
from mriganx.config import Direction, ExportFormat
from mriganx.errors import MriganxError
from mriganx.frame import FRAME_AXCODES
from mriganx.io import atomic_folder, is_within, load_json
from mriganx.modelfile import ModelFile, resolve
from mriganx.networks import TwoWayGenerator

ONNX_OPSET = 18
BOUNDARY_FILE = "mriganx.json"
BUNDLE_VERSION = "0.1.0"
# The newest MONAI bundle metadata schema (the model zoo's); MONAI's verify_metadata fetches it over the network.
BUNDLE_SCHEMA = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"


def boundary(model: ModelFile) -> dict[str, Any]:
    """What an exported network expects and returns, as plain values (``mriganx.json``, and inside every file)."""
    data, k = model.data, model.model.context_slices
    channels = model.model.channels
    return {
        "mriganx_version": mriganx.__version__,
        "model": {"name": model.name(), "weights_sha256": model.weights_sha256(), "steps": model.steps,
                  "licence": model.licence() or "not recorded", **({"terms": model.terms()} if model.terms() else {}),
                  "fine_tuned_from": [{key: parent[key] for key in ("name", "version", "weights_sha256", "licence", "terms")
                                       if key in parent} for parent in model.lineage]},
        "input": {
            "shape": ["batch", channels, "height", "width"],
            "dtype": "float32",
            "value_range": [-1.0, 1.0],
            "slices": f"axial slices of one volume; rows run anterior -> posterior, columns from the patient's right "
                      f"to left (nibabel axis codes {''.join(FRAME_AXCODES)} for slice, row, column)",
            "channels": f"a slice between its {k} neighbours on either side, in slice order (edge slices repeat)"
                        if k else "one slice",
            "in_plane_mm": data.in_plane_mm,
            "resampling": "resample each slice to in_plane_mm voxels first (area averaging when shrinking)"
                          if data.in_plane_mm else "none: the model takes each image on its own grid",
            "scaling": "x' = clip(2 (x - low) / (high - low) - 1, -1, 1) with one low/high per volume: low is the "
                       "lower_percentile of all voxels, high the upper_percentile of the voxels above low",
            "lower_percentile": data.lower_percentile,
            "upper_percentile": data.upper_percentile,
            "height_width_multiple": data.pad_multiple,
            "padding": "pad rows and columns symmetrically with -1 (background) to the multiple; crop the output back",
        },
        "output": {
            "shape": ["batch", channels, "height", "width"],
            "value_range": [-1.0, 1.0],
            "channels": "the translated stack; each slice is the mean of its 2k+1 predictions" if k else "one slice",
            "background": "set -1 wherever the input slice has no signal (above 1 % of the range, holes filled)"
                          if model.model.mask_background else "none",
            "scaling": "y = low + (y' + 1) / 2 (high - low) with the target contrast's range below",
            "intensity": {name: rng.to_list() for name, rng in model.intensity.items()},
        },
        "directions": {d.value: " -> ".join(d.names) for d in Direction},
    }


def two_way(model: ModelFile) -> TwoWayGenerator:
    """Both generators of a model file in one module, in inference mode."""
    net = TwoWayGenerator(model.model)
    net.t1_to_t2.load_state_dict(model.generators[Direction.T1_TO_T2])
    net.t2_to_t1.load_state_dict(model.generators[Direction.T2_TO_T1])
    return net.eval()


def generators(model: ModelFile) -> dict[Direction, torch.nn.Module]:
    """Each direction's generator of a model file, in inference mode."""
    net = two_way(model)
    return {Direction.T1_TO_T2: net.t1_to_t2, Direction.T2_TO_T1: net.t2_to_t1}


def generator(model: ModelFile, direction: Direction) -> torch.nn.Module:
    return generators(model)[direction]


def example_input(model: ModelFile, batch: int = 2, size: tuple[int, int] = (64, 56)) -> torch.Tensor:
    """A valid network input (for tracing and shape checks): ``(batch, 2k+1, rows, cols)`` in [-1, 1]."""
    generator_ = torch.Generator().manual_seed(0)
    return torch.rand(batch, model.model.channels, *size, generator=generator_) * 2 - 1


def write_torchscript(model: ModelFile, folder: Path) -> list[Path]:
    """One TorchScript file per direction, the boundary inside each (``mriganx.json`` extra file)."""
    from monai.data import save_net_with_metadata

    written = []
    edge = json.dumps(boundary(model)).encode()
    for direction, net in generators(model).items():
        prefix = folder / direction.value
        save_net_with_metadata(torch.jit.script(net), str(prefix), include_config_vals=False,
                               more_extra_files={BOUNDARY_FILE: edge})
        written.append(prefix.with_suffix(".ts"))
    return written


def write_onnx(model: ModelFile, folder: Path) -> list[Path]:
    """One ONNX file per direction (opset :data:`ONNX_OPSET`, dynamic batch, height and width), the boundary in
    its metadata."""
    import onnx

    dims = {0: "batch", 2: "height", 3: "width"}
    written = []
    edge = json.dumps(boundary(model))
    for direction, net in generators(model).items():
        path = folder / f"{direction.value}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on torchvision ops this network does not use
            torch.onnx.export(net, (example_input(model),), str(path), input_names=["slices"],
                              output_names=["translated"], dynamic_axes={"slices": dims, "translated": dims},
                              opset_version=ONNX_OPSET, dynamo=True, external_data=False, verbose=False)
        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "mriganx", edge
        proto.doc_string = f"mriganx {direction.value} generator; the boundary (input scaling, output range) is in metadata_props['mriganx']"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))
        written.append(path)
    return written


def _metadata(model: ModelFile) -> dict[str, Any]:
    """``configs/metadata.json``: the fields of MONAI's bundle schema, filled from the model file."""
    import monai
    import numpy

    edge = boundary(model)
    name = model.name("mriganx model")
    spatial = [f"{model.data.pad_multiple}*n", f"{model.data.pad_multiple}*n"]

    def tensor(contrast: str) -> dict[str, Any]:
        return {
            "type": "image", "format": "magnitude", "modality": "MR", "num_channels": model.model.channels,
            "spatial_shape": spatial, "dtype": "float32", "value_range": [-1, 1], "is_patch_data": False,
            "channel_def": {str(i): f"{contrast} slice" for i in range(model.model.channels)},
        }

    return {
        "schema": BUNDLE_SCHEMA,
        "version": BUNDLE_VERSION,
        "changelog": {BUNDLE_VERSION: f"exported by mriganx {mriganx.__version__} from {name}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {"mriganx": mriganx.__version__, "nibabel": _version("nibabel"),
                                      "simpleitk": _version("SimpleITK")},
        "name": f"mriganx T1w <-> T2w brain MRI translation ({name})",
        "task": "Translate brain MRI between T1-weighted and T2-weighted contrast (unpaired CycleGAN, 2D slices)",
        "description": "Both generators of an mriganx CycleGAN. inference.json translates every scan in input_dir "
                       "(direction auto: T1w or T2w read from each image; or t1-to-t2, t2-to-t1) and writes NIfTI on "
                       "each input's own grid, as `mriganx convert` does, with the same checks and refusals.",
        "authors": "mriganx contributors",
        "copyright": "Copyright (c) mriganx contributors",
        "intended_use": "Research only, not for diagnosis: a synthetic contrast to view beside the measured one, "
                        "or to feed tools that need it. See docs/README.md for what the model was never shown.",
        "data_source": model.training_data() or "not recorded in the model file",
        "data_type": "nifti",
        "license": model.licence() or "not recorded in the model file: ask whoever trained it",
        "references": ["Zhu J-Y, Park T, Isola P, Efros AA. Unpaired Image-to-Image Translation using Cycle-Consistent "
                       "Adversarial Networks. ICCV 2017."],
        "network_data_format": {
            "inputs": {"image": tensor("T1w (t1-to-t2) or T2w (t2-to-t1)")},
            "outputs": {"pred": tensor("T2w (t1-to-t2) or T1w (t2-to-t1)")},
        },
        "mriganx_boundary": edge,
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _settings(model: ModelFile) -> dict[str, Any]:
    """The model file without its weights: what :func:`mriganx.bundle.model_file` needs to rebuild it."""
    plain = model.to_dict()
    return {key: plain[key] for key in ("format", "format_version", "mriganx_version", "frame", "model", "data",
                                        "intensity", "steps")}


def _inference(model: ModelFile) -> dict[str, Any]:
    """``configs/inference.json``: MONAI bundle config syntax; the steps around the network are mriganx's."""
    return {
        # MONAI binds "$import a.b" to the name "a.b"; importing the package after its submodule binds "mriganx" with
        # its "bundle" attribute loaded ("$from mriganx import bundle" fails: MONAI does not import submodules).
        "imports": ["$import os", "$import torch", "$import mriganx.bundle", "$import mriganx"],
        "bundle_root": ".",
        "input_dir": "$@bundle_root + '/input'",
        "output_dir": "$@bundle_root + '/eval'",
        "direction": "auto",
        "overwrite": False,
        "skip_existing": False,
        "confidence": False,
        "batch_size": 8,
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "ckpt_path": "$os.path.join(@bundle_root, 'models', 'model.pt')",
        "mriganx": _settings(model),
        "network_def": {"_target_": "mriganx.bundle.network", "settings": "@mriganx"},
        # mriganx.convert.convert with the bundle's network: every decision `mriganx convert` makes, and every
        # failure on the user's input one line on stderr (mriganx.bundle says why it takes plain values).
        "run": ["$mriganx.bundle.run(@network_def, @ckpt_path, @mriganx, @input_dir, @output_dir, direction=@direction, "
                "overwrite=@overwrite, skip_existing=@skip_existing, confidence=@confidence, batch_size=@batch_size, "
                "device=@device)"],
    }


def _readme(model: ModelFile) -> str:
    edge = json.dumps(boundary(model), indent=1)
    return f"""# mriganx T1w <-> T2w translation bundle

Exported by `mriganx export` (mriganx {mriganx.__version__}). Run it with MONAI's bundle runner (needs
`pip install mriganx fire`):

```bash
python -m monai.bundle run --config_file configs/inference.json --bundle_root . \\
    --input_dir SCANS --output_dir OUT [--direction t1-to-t2] [--overwrite true]
```

Every scan in `SCANS` (NIfTI, DICOM series folders, PNG slices) is translated and written to `OUT` as NIfTI on its
own grid (same shape, affine and qform/sform codes), named as `mriganx convert` names it (`<name>_t2.nii.gz`). The
run is `mriganx convert SCANS -o OUT` with this network (the bundle calls mriganx's own conversion): direction
`auto` (the default) reads T1w or T2w from each image and refuses an image that is neither; the same checks,
refusals and overwrite rules (`overwrite`, `skip_existing`), the files written listed on stdout, each problem one
line on stderr, exit code 2 if any scan failed. `models/model.pt` is the state dict of `mriganx.networks.TwoWayGenerator`; `models/model.ts` is the same
network in TorchScript (`forward(x, reverse=False)`: T1w -> T2w, `reverse=True`: T2w -> T1w), the form MONAI Deploy
loads. TorchScript is deprecated upstream; it is shipped because MONAI bundles and Deploy load it.

## The network's boundary

{edge}

## The model card

{model.card()}
"""


def _licence(model: ModelFile) -> str:
    """``LICENSE``: the terms the weights carry, their own or, for a fine-tuned model, inherited from its parent."""
    own, licence = model.provenance.get("licence"), model.licence()
    if licence is None:
        return ("The licence of these weights is not recorded in the model file they were exported from. Weights carry the\n"
                "terms of the data they were trained on: ask whoever trained the model before sharing this bundle.\n")
    terms = f"\nTerms: {model.terms()}\n" if model.terms() else ""
    if not own:  # inherited: fine-tuning does not shed the parent's terms, and adds its data's, which are unknown here
        parent = model.lineage[0]
        return (f"These weights were fine-tuned from {parent['name']} and carry its terms:\n\n{parent['licence']}\n{terms}\n"
                "They also carry the terms of the data they were fine-tuned on, which the model file does not record:\n"
                "ask whoever fine-tuned the model before sharing this bundle.\n")
    if str(own).startswith("Apache-2.0"):
        return ("SPDX-License-Identifier: Apache-2.0\n\nThe weights in models/ and the configs of this bundle are licensed "
                f"under the Apache License, Version 2.0: https://www.apache.org/licenses/LICENSE-2.0\n\n{own}\n{terms}")
    return f"{own}\n{terms}"


def quiet_monai_logs() -> None:
    """MONAI's bundle scripts log their arguments at INFO; an export's own output is the list of files written."""
    import logging

    for name in ("monai.bundle", "monai.bundle.scripts", "monai.networks.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


def write_bundle(model: ModelFile, folder: Path) -> list[Path]:
    """The MONAI bundle layout (see the module docstring); ``models/model.ts`` comes from MONAI's own
    ``ckpt_export`` of the bundle's ``network_def`` with ``models/model.pt``, which also proves the config parses."""
    from monai.bundle import ckpt_export

    quiet_monai_logs()
    for part in ("configs", "models", "docs"):
        (folder / part).mkdir(parents=True, exist_ok=True)
    files = {
        "configs/metadata.json": json.dumps(_metadata(model), indent=2) + "\n",
        "configs/inference.json": json.dumps(_inference(model), indent=2) + "\n",
        "docs/README.md": _readme(model),
        "LICENSE": _licence(model),
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    torch.save(two_way(model).state_dict(), folder / "models" / "model.pt")
    ckpt_export(net_id="network_def", filepath=str(folder / "models" / "model.ts"),
                ckpt_file=str(folder / "models" / "model.pt"), meta_file=str(folder / "configs" / "metadata.json"),
                config_file=str(folder / "configs" / "inference.json"), bundle_root=str(folder), use_trace=False)
    return [folder / name for name in (*files, "models/model.pt", "models/model.ts")]


NEEDS = {ExportFormat.ONNX: ("onnx", "onnxscript")}  # what torch's ONNX exporter imports; the rest is in the stack
WRITERS = {ExportFormat.TORCHSCRIPT: write_torchscript, ExportFormat.ONNX: write_onnx, ExportFormat.MONAI_BUNDLE: write_bundle}


# Every file an export writes, in any format: a folder holding anything else is not one of ours to replace.
EXPORTED_FILES = frozenset({
    BOUNDARY_FILE, *(f"{d.value}{ext}" for d in Direction for ext in (".ts", ".onnx")), "LICENSE",
    "configs/metadata.json", "configs/inference.json", "docs/README.md", "models/model.pt", "models/model.ts",
})


def earlier_export(folder: Path) -> str | None:
    """``None`` if ``folder`` is an export mriganx wrote (its ``mriganx.json`` and nothing an export does not
    write), else what says it is not: the one kind of folder ``export --overwrite`` replaces, so that a training
    run, a bundle with the user's scans in it, or any other folder is never deleted."""
    if folder.is_symlink() or not folder.is_dir():
        return "is not a folder" if not folder.is_symlink() else "is a symbolic link"
    try:
        if "mriganx_version" not in load_json(folder / BOUNDARY_FILE):
            return f"its {BOUNDARY_FILE} is not an export's"
    except MriganxError:
        return f"holds no {BOUNDARY_FILE} of an earlier export"
    for entry in sorted(folder.rglob("*")):
        name = entry.relative_to(folder).as_posix()
        known = name in EXPORTED_FILES or any(f.startswith(f"{name}/") for f in EXPORTED_FILES)
        if entry.is_symlink() or not known or (entry.is_dir() and name in EXPORTED_FILES):
            return f"holds {name}, which no export writes"
    return None


def refuse_export_into(out: Path, model: Path, overwrite: bool) -> None:
    """Refuse, before any work, an export folder in the model's own folder (a training run: its files are not the
    export's) or one that exists and is not an earlier export (see :func:`earlier_export`)."""
    if is_within(out, model.parent):
        raise MriganxError(out, f"is in the folder of the model it exports ({model.parent}); an export there would "
                                "sit among (or replace) the run's files: choose a folder outside it")
    if out.exists() or out.is_symlink():
        foreign = earlier_export(out)
        if foreign is not None:
            raise MriganxError(out, f"exists and is not an export mriganx wrote ({foreign}); --overwrite replaces "
                                    "only an earlier export: choose another folder")
        if not overwrite:
            raise MriganxError(out, "exists; pass --overwrite to replace it")


def export_model(model: str | Path | None, fmt: ExportFormat | str, out: Path, overwrite: bool = False) -> list[Path]:
    """Export a model file (``None``: the shipped default) in ``fmt`` into the folder ``out``; returns the files
    written. The folder appears whole or not at all; an existing one is replaced (``overwrite``) only if it is an
    earlier export (:func:`refuse_export_into`)."""
    fmt = ExportFormat(fmt)
    missing = [name for name in NEEDS.get(fmt, ()) if importlib.util.find_spec(name) is None]
    if missing:
        raise MriganxError(None, f"--format {fmt.value} needs {' and '.join(missing)}: pip install 'mriganx[export]'")
    path = resolve(model)
    refuse_export_into(Path(out), Path(path).resolve(), overwrite)  # a linked model.pt: its run is where it lies
    loaded = ModelFile.load(path)
    with atomic_folder(out, overwrite=overwrite, protect=(Path(path),)) as staging:
        written = WRITERS[fmt](loaded, staging)
        (staging / BOUNDARY_FILE).write_text(json.dumps(boundary(loaded), indent=1) + "\n", encoding="utf-8")
    return [out / p.relative_to(staging) for p in written] + [out / BOUNDARY_FILE]
