"""The ``mriganx`` command: a thin Typer face over the library. Each command parses options and calls one
library function; errors the user can fix print one line (``error: <path>: <what>``) and exit with code 2."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys

# Before torch loads OpenMP: threads that wait for work sleep instead of spinning. Beside another busy process on
# two cores, spinning threads took the cores the other's threads needed (a `cpu` step 13x slower with ACTIVE, 2.8x
# with libgomp's default, 1.9x with PASSIVE; benchmarks/contention.py, docs/performance.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from collections.abc import Callable
from pathlib import Path
from enum import Enum
from typing import Annotated, Any

import typer

from mriganx.config import (
    Config, Direction, ExportFormat, IntensityScale, OutputFormat, Precision, changed_settings, load_config, override,
)
from mriganx.errors import MriganxError
from mriganx.frame import MNI_SHAPE

app = typer.Typer(
    name="mriganx",
    help="Translate brain MRI between T1-weighted and T2-weighted contrast with an unpaired CycleGAN.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help texts are plain: with rich markup, "[default: the shipped model]" would be read as a style tag and vanish.
    rich_markup_mode=None,
)
STATE = {"debug": False}


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False) -> None:
    STATE["debug"] = debug
    logging.basicConfig(level=logging.INFO if debug else logging.WARNING, format="%(levelname)s: %(message)s")
    # SIGTERM (a job scheduler, `kill`) unwinds like an exception, so that half-written outputs are removed.
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def grid_shape(text: str) -> tuple[int, int, int]:
    """``"181,217,181"`` -> ``(181, 217, 181)``; anything else is a one-line error (not a usage dump).

    >>> grid_shape("44, 52,40")
    (44, 52, 40)
    """
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise MriganxError(text, f"--size needs three positive integers like {','.join(map(str, MNI_SHAPE))}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn MriganxError (and a few OS errors) into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MriganxError as error:
            if STATE["debug"]:
                raise
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None
        except OSError as error:  # a file system problem no reader anticipated: still one line, still exit 2
            if STATE["debug"]:
                raise
            typer.echo(f"error: {error.filename or 'file system'}: {error.strerror or error}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@friendly
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the phantom subjects.")],
    subjects: Annotated[int, typer.Option(help="How many subjects.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the first subject (subject i uses seed + i).")] = 0,
    size: Annotated[str, typer.Option(help="Grid shape X,Y,Z in RAS order.")] = ",".join(map(str, MNI_SHAPE)),
    spacing: Annotated[float, typer.Option(help="Voxel size in mm.")] = 1.0,
    orientation: Annotated[str, typer.Option(help="Axis codes of the stored voxel order, e.g. RAS, LPS, LAS.")] = "RAS",
    noise: Annotated[float, typer.Option(help="Rician noise sigma as a fraction of the brightest tissue.")] = 0.0,
    bias: Annotated[float, typer.Option(help="Amplitude of a smooth multiplicative bias field.")] = 0.0,
    png: Annotated[bool, typer.Option(help="Also write 8-bit axial PNG slices.")] = False,
) -> None:
    """Write synthetic head phantoms: paired T1w/T2w NIfTI volumes with tissue labels (ground truth)."""
    from mriganx.synthetic import write_subjects

    if len(orientation) != 3:
        raise MriganxError(orientation, "--orientation needs three axis codes like RAS or LPS")
    written = write_subjects(out_dir, subjects, seed, shape=grid_shape(size), spacing=spacing, axcodes=orientation.upper(),
                             noise=noise, bias=bias, png=png)
    for subject in written:
        typer.echo(f"{subject['t1']}  {subject['t2']}")


@app.command()
@friendly
def train(
    t1_dir: Annotated[Path, typer.Option("--t1-dir", help="Folder of T1w images (NIfTI, DICOM, PNG).")],
    t2_dir: Annotated[Path, typer.Option("--t2-dir", help="Folder of T2w images (unpaired).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: model.pt, checkpoints, logs.")] = Path("runs/mriganx"),
    config: Annotated[str | None, typer.Option(help="Shipped config name (default, cpu, cpu-volume, smoke) or a YAML file [default: cpu].")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs at the initial learning rate.")] = None,
    epochs_decay: Annotated[int | None, typer.Option(help="Epochs of linear decay.")] = None,
    steps: Annotated[int | None, typer.Option(help="Run length in steps (half constant, half decay); replaces epochs.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Slices per batch and contrast.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    context_slices: Annotated[int | None, typer.Option(help="2.5D: neighbours per side fed with each slice (0 = 2D).")] = None,
    precision: Annotated[Precision | None, typer.Option(
        help="auto (bf16 on CUDA, fp32 elsewhere), fp32, bf16 (also fast on CPUs with AVX512-BF16 or AMX), fp16.",
    )] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    init: Annotated[str | None, typer.Option(help="Fine-tune: start the generators from 'default' (the shipped model) or a model.pt.")] = None,
) -> None:
    """Train both directions (T1w->T2w and T2w->T1w) on unpaired folders."""
    from mriganx.training import check_resume
    from mriganx.training import train as run_training

    for folder in (t1_dir, t2_dir):
        if out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents:
            raise MriganxError(out, f"is inside the training folder {folder}; put the run elsewhere (the next training would read it as data)")
    if resume and (out / "config.yaml").exists():
        cfg = load_config(out / "config.yaml")
        if config is not None:  # the run's own config wins; say so rather than ignore --config in silence
            differ = changed_settings(cfg, load_config(config))
            network = [name for name in differ if not name.startswith("train.")]
            if network:
                raise MriganxError(out / "config.yaml", f"the run was trained with another config (--config {config} "
                                                         f"differs in {', '.join(network)}); drop --config or start a new --out")
            if differ:
                typer.echo(f"note: resuming with {out / 'config.yaml'}; --config {config}'s {', '.join(differ)} not applied "
                           "(pass them as options to change them)", err=True)
    elif init is not None and config is None:
        cfg = config_of(init)  # fine-tuning keeps the network (and preprocessing) of the model it starts from
    else:
        cfg = load_config(config or "cpu")
    cfg = override(cfg, {
        "train.epochs": epochs, "train.epochs_decay": epochs_decay, "train.steps": steps, "train.max_steps": max_steps,
        "train.batch_size": batch_size, "train.device": device, "train.seed": seed,
        "model.context_slices": context_slices, "train.precision": precision, "train.init": init,
    })
    if resume and (out / "config.yaml").exists():  # before any data is read; the checkpoint is checked again
        check_resume(load_config(out / "config.yaml"), cfg, out / "config.yaml")
    if cfg.train.steps is not None and (epochs is not None or epochs_decay is not None):
        given = f"--steps {steps}" if steps is not None else f"config {cfg.name} (train.steps {cfg.train.steps})"
        raise MriganxError(None, f"--epochs and --epochs-decay do not act when the run's length is set in steps by {given}; "
                                 "give the length one way")
    result = run_training(cfg, t1_dir, t2_dir, out, resume=resume)
    state = "interrupted; continue with --resume" if result.interrupted else "done"
    typer.echo(f"{state}: {result.steps} steps in {result.seconds:.0f} s")
    typer.echo(f"model: {result.model_path}")
    typer.echo(f"evolution strip: {result.strip}")
    typer.echo(f"tensorboard --logdir {result.run_dir / 'tensorboard'}")
    if result.interrupted:
        raise typer.Exit(130)


def config_of(model: str) -> Config:
    """The ``cpu`` config with the network and preprocessing of a model file (for fine-tuning it)."""
    from mriganx.modelfile import ModelFile, resolve

    trained = ModelFile.load(resolve(model))
    base = load_config("cpu")
    return Config(name=f"finetune-{base.name}", model=trained.model, data=trained.data, train=base.train)


class DirectionChoice(str, Enum):
    """``--direction``: ``auto`` decides from each image (mriganx.contrast), the others are fixed."""

    AUTO = "auto"
    T1_TO_T2 = Direction.T1_TO_T2.value
    T2_TO_T1 = Direction.T2_TO_T1.value

    @property
    def direction(self) -> Direction | None:
        return None if self is DirectionChoice.AUTO else Direction(self.value)


@app.command()
@friendly
def convert(
    inputs: Annotated[list[Path], typer.Argument(help="NIfTI/PNG files, DICOM series folders or files, or folders of them; or one BIDS dataset root (see --bids).")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="A trained model.pt [default: the shipped model; see `mriganx models`].")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder (or file name, for one input) [default: beside each input, as <name>_t2 or <name>_t1].")] = None,
    direction: Annotated[DirectionChoice, typer.Option(help="auto: T1w or T2w is read from each image, which goes to the other contrast.")] = DirectionChoice.AUTO,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Slices per forward pass.")] = 8,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    skip_existing: Annotated[bool, typer.Option(help="Leave inputs whose output exists alone.")] = False,
    series: Annotated[str | None, typer.Option(help="SeriesInstanceUID to take from a DICOM folder holding several.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes for many scans (each loads the model once).")] = 1,
    confidence: Annotated[bool, typer.Option(help="Also write <output>_confidence on the same grid: where the translation is least trustworthy.")] = False,
    output_format: Annotated[OutputFormat, typer.Option(help="nifti; dicom (DICOM inputs only): a new series in the original's study, folder <name>_t2_dicom with one file per slice; both: NIfTI and DICOM.")] = OutputFormat.NIFTI,
    bids: Annotated[bool | None, typer.Option("--bids/--no-bids", help="Treat the one input as a BIDS dataset root (default: when it holds dataset_description.json). Its anat/ T1w and T2w images go into ROOT/derivatives/mriganx (or -o) with BIDS-derivative names and JSON sidecars; existing outputs are skipped unless --overwrite; --direction keeps only the images it starts from.")] = None,
) -> None:
    """Translate scans; each output is NIfTI on its input's own grid (same shape, affine, qform/sform codes).

    With --output-format dicom a DICOM input's translation is written as a new DICOM series instead (both: as NIfTI
    and DICOM), to sit beside the original in its study: <name>_t2_dicom/ holds one file per slice, with the
    original's slice geometry, new UIDs, SeriesNumber + 1000 and a SeriesDescription that says synthetic.

    A BIDS dataset root (or any folder, with --bids) becomes a BIDS derivative dataset under derivatives/mriganx:
    sub-01_T1w -> sub-01_desc-mriganx_T2w plus a JSON sidecar; a file whose image contradicts its suffix is refused.
    """
    from mriganx.bids import convert_bids, dataset_root, refuse_writing_into_datasets
    from mriganx.convert import convert as run_convert
    from mriganx.modelfile import resolve

    path = resolve(model)
    if model in (None, "default"):
        typer.echo(f"model: shipped default {path} (tissue prior + CycleGAN, trained on real scans of 3 people; how well it does "
                   "and where it fails: `mriganx models`)", err=True)
    else:
        typer.echo(f"model: {path}", err=True)
    root = dataset_root(inputs, bids)
    if root is None and bids is None:
        refuse_writing_into_datasets(inputs, output)
    if root is not None and output_format is not OutputFormat.NIFTI:
        raise MriganxError(root, f"--output-format {output_format.value} needs DICOM inputs; a BIDS dataset holds NIfTI")
    if root is not None:
        report = convert_bids(root, path, output=output, direction=direction.direction, device=device,
                              batch_size=batch_size, overwrite=overwrite, confidence=confidence, workers=workers)
    else:
        report = run_convert(inputs, path, direction=direction.direction, output=output, device=device,
                             batch_size=batch_size, overwrite=overwrite, skip_existing=skip_existing, series=series,
                             workers=workers, confidence=confidence, output_format=output_format)
    for text, to_stderr in report.lines():
        typer.echo(text, err=to_stderr)
    if report.failed:
        raise typer.Exit(2)


@app.command()
@friendly
def evaluate(
    source: Annotated[Path, typer.Option(help="Image or folder to translate.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="A trained model.pt [default: the shipped model].")] = None,
    target: Annotated[Path | None, typer.Option(help="The true target-contrast image or folder (paired).")] = None,
    direction: Annotated[Direction, typer.Option(help="Translation direction.")] = Direction.T1_TO_T2,
    mask: Annotated[Path | None, typer.Option(help="Head mask on the target's grid (default: from the target).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the CSV, JSON and figure.")] = Path("evaluation"),
    intensity: Annotated[IntensityScale, typer.Option(help="How intensities are scaled to [0, 1] before scoring.")] = IntensityScale.AUTO,
    confidence: Annotated[bool, typer.Option(help="Also score how well the confidence map ranks the true error.")] = False,
) -> None:
    """Score translations against paired targets (PSNR, SSIM, MS-SSIM, MAE; whole and in the head), or, without
    a target, report the cycle error and the intensity-distribution distance."""
    import json

    from mriganx.evaluation import evaluate as run_evaluate
    from mriganx.evaluation import evaluate_unpaired

    from mriganx.modelfile import resolve

    if target is None:
        typer.echo(json.dumps(evaluate_unpaired(resolve(model), source, direction), indent=1))
        return
    report = run_evaluate(resolve(model), source, target, direction, mask, out, intensity, confidence=confidence)
    summary = report.summary
    typer.echo(f"{summary['direction']}: {summary['slices']} slices, intensities scaled '{summary['intensity_scale']}', data range 1")
    for key, value in summary["mean"].items():
        typer.echo(f"  {key:20s} {value:.4f}")
    if report.confidence is not None:
        c = report.confidence
        typer.echo(f"  confidence: Spearman {c['spearman']:.3f} with |error|; MAE {c['mae_most_confident']:.4f} in the "
                   f"most trusted 10 %, {c['mae_least_confident']:.4f} in the least trusted 10 % (all {c['mae_all']:.4f})")
    typer.echo(f"written to {out}/")


@app.command()
@friendly
def models(
    model: Annotated[str | None, typer.Argument(help="A model.pt or a shipped model's name [default: the shipped default].")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the shipped models, one line each.")] = False,
) -> None:
    """Print a model's card: what it was trained on, how, how well it did on real scans it never saw, its limits."""
    from mriganx.modelfile import ModelFile, resolve, shipped_models

    if list_:
        for name in shipped_models():
            listed = ModelFile.load(resolve(name))
            typer.echo(f"{name}: {listed.name(name)}; weights licence: {(listed.licence() or 'not recorded').split(' (')[0]}")
        return
    path = resolve(model)
    typer.echo(ModelFile.load(path).card(path))


@app.command()
@friendly
def export(
    model: Annotated[str | None, typer.Argument(help="A model.pt [default: the shipped model].")] = None,
    format: Annotated[ExportFormat, typer.Option("--format", "-f", help="monai-bundle: a MONAI bundle folder; torchscript, onnx: one network file per direction.")] = ExportFormat.MONAI_BUNDLE,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (it appears whole or not at all).")] = Path("mriganx-export"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Export a model for other systems: a MONAI bundle (`python -m monai.bundle run`), TorchScript or ONNX; what
    the networks expect and return is in OUT/mriganx.json (docs/deploy.md)."""
    from mriganx.export import export_model

    for path in export_model(model, format, out, overwrite=overwrite):
        typer.echo(str(path))


@app.command()
@friendly
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything the demo makes.")] = Path("mriganx-demo"),
    steps: Annotated[int, typer.Option(help="Training steps (fixed, so that a busy machine changes the time, not the result).")] = 2000,
    config: Annotated[str, typer.Option(help="Config to train.")] = "cpu-volume",
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier demo in --out.")] = False,
) -> None:
    """Synthetic subjects -> train -> convert a held-out T1w -> evaluate against its true T2w. No data needed."""
    from mriganx.demo import DEMO_STEPS, DOCUMENTED_SSIM, run_demo

    result = run_demo(out, steps, config, overwrite=overwrite)
    mean = result.metrics["mean"]
    typer.echo(f"trained {result.steps} steps in {result.train_seconds / 60:.1f} min")
    typer.echo(f"held-out T1w -> T2w: SSIM {mean['ssim']:.3f} (head {mean['ssim_mask']:.3f}), PSNR {mean['psnr']:.2f} dB, "
               f"MAE {mean['mae']:.4f}, through-plane error {mean['through_plane_error']:.4f}")
    doubt = result.metrics["confidence"]
    typer.echo(f"confidence map vs true error: Spearman {doubt['spearman']:.2f}; MAE {doubt['mae_most_confident']:.3f} where "
               f"most trusted, {doubt['mae_least_confident']:.3f} where least")
    typer.echo(f"translation:     {result.translation}")
    typer.echo(f"confidence map:  {result.confidence}")
    typer.echo(f"true T2w:        {result.truth}")
    typer.echo(f"figure:          {result.evaluation['figure']}")
    typer.echo(f"metrics:         {result.evaluation['json']}")
    typer.echo(f"evolution strip: {result.evolution}")
    typer.echo(f"open in ITK-SNAP: {result.viewer_command()}")
    if steps == DEMO_STEPS and config == "cpu-volume":
        verdict = "as documented" if result.as_documented else "BELOW the documented result; please report it"
        typer.echo(f"result: held-out SSIM {mean['ssim']:.3f} against the documented {DOCUMENTED_SSIM:.3f}: {verdict}")


if __name__ == "__main__":
    sys.exit(app())
