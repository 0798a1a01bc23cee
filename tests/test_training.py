"""Training end to end on synthetic phantoms: artefacts on disk, exact resume, determinism, and real learning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mriganx.config import Direction, load_config, override
from mriganx.inference import Translator
from mriganx.intensity import fit_range, normalise
from mriganx.io import load_image
from mriganx.modelfile import FORMAT, ModelFile
from mriganx.training import Trainer, train


def smoke(steps: int, **extra: object):
    return override(load_config("smoke"), {"train.max_steps": steps, "train.device": "cpu", **extra})


def generator_weights(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    return {f"{net}.{k}": v for net in ("g_t1_t2", "g_t2_t1", "d_t1", "d_t2") for k, v in state["networks"][net].items()}


def test_smoke_training_writes_a_complete_run(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    result = train(smoke(6), phantom_dirs["t1"], phantom_dirs["t2"], tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert result.steps == 6 and all(np.isfinite(v) for v in result.losses.values())
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "config.yaml").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "evolution.png").stat().st_size > 0
    payload = torch.load(run / "model.pt", weights_only=True)  # must not need pickled code
    assert payload["format"] == FORMAT
    assert set(payload["generators"]) == {"t1-to-t2", "t2-to-t1"}
    assert payload["intensity"]["t1"][1] > payload["intensity"]["t1"][0]
    assert payload["data_fingerprint"]["t1"] != payload["data_fingerprint"]["t2"]
    assert payload["model"]["ngf"] == 4 and payload["frame"] == "SPL"


def test_resume_matches_an_uninterrupted_run(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    t1, t2 = phantom_dirs["t1"], phantom_dirs["t2"]
    train(smoke(8), t1, t2, tmp_path / "straight", progress=False)
    train(smoke(4), t1, t2, tmp_path / "split", progress=False)
    resumed = train(smoke(8), t1, t2, tmp_path / "split", resume=True, progress=False)
    assert resumed.steps == 4
    straight, split = generator_weights(tmp_path / "straight"), generator_weights(tmp_path / "split")
    assert straight.keys() == split.keys()
    for name in straight:
        assert torch.equal(straight[name], split[name]), name


def test_same_seed_same_weights_other_seed_differs(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    t1, t2 = phantom_dirs["t1"], phantom_dirs["t2"]
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        train(smoke(3, **{"train.seed": seed}), t1, t2, tmp_path / name, progress=False)
    a, b, c = (generator_weights(tmp_path / n) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_a_run_refuses_to_clobber_an_existing_run(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    train(smoke(2), phantom_dirs["t1"], phantom_dirs["t2"], tmp_path / "run", progress=False)
    try:
        train(smoke(2), phantom_dirs["t1"], phantom_dirs["t2"], tmp_path / "run", progress=False)
    except Exception as error:  # noqa: BLE001
        assert "--resume" in str(error)
    else:
        raise AssertionError("a second run into the same folder must be refused")


def _paired_l1(model: ModelFile | Path, t1_path: Path, t2_path: Path) -> float:
    translator = Translator(model, "cpu") if isinstance(model, ModelFile) else Translator.load(model, "cpu")
    t1, t2 = load_image(t1_path), load_image(t2_path)
    out = translator.translate(t1, Direction.T1_TO_T2)
    # Both sides on the true T2w's own [-1, 1] scale, inside the head.
    rng = fit_range(t2.array)
    return float(np.abs(normalise(out.array, rng) - normalise(t2.array, rng))[out.mask].mean())


def test_bounded_training_learns_the_contrast(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    config = override(load_config("cpu"), {
        # Without the tissue prior, so that the contrast must be learnt by the steps themselves.
        "model.prior": False, "model.ngf": 8, "model.n_blocks": 2, "model.ndf": 16, "train.batch_size": 4, "train.max_steps": 150,
        "train.epochs": 10, "train.epochs_decay": 10, "train.lr": 0.001, "train.ema_decay": 0.0,
        "train.device": "cpu", "train.checkpoint_every": 1000, "train.image_every": 1000,
    })
    trainer = Trainer(config, phantom_dirs["t1"], phantom_dirs["t2"], tmp_path / "run", progress=False)
    untrained = _paired_l1(trainer.model_file(), phantom_dirs["held_t1"], phantom_dirs["held_t2"])
    result = trainer.run()
    trained = _paired_l1(result.model_path, phantom_dirs["held_t1"], phantom_dirs["held_t2"])
    print(f"held-out paired L1 in the head: untrained {untrained:.3f} -> trained {trained:.3f}")
    assert trained < 0.75 * untrained


def test_precision_settings_pick_the_autocast_dtype() -> None:
    from mriganx.config import Precision
    from mriganx.devices import autocast_dtype

    cpu = torch.device("cpu")
    assert autocast_dtype(Precision.AUTO, cpu) is None  # fp32 unless asked: not every CPU has bf16 instructions
    assert autocast_dtype(Precision.FP32, cpu) is None
    assert autocast_dtype(Precision.BF16, cpu) is torch.bfloat16


def test_bf16_training_on_cpu_keeps_fp32_weights_and_updates_them(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    from mriganx.training import CycleGAN

    config = smoke(0, **{"train.precision": "bf16"})
    torch.manual_seed(0)
    gan = CycleGAN(config, torch.device("cpu"))
    before = {k: v.clone() for k, v in gan.generators.state_dict().items()}
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    mask = torch.ones_like(x, dtype=torch.bool)
    losses = [gan.step(x, mask, -x, mask) for _ in range(3)]
    assert all(np.isfinite(v) for step in losses for v in step.values())
    after = gan.generators.state_dict()
    assert all(v.dtype == torch.float32 for v in after.values())  # autocast computes in bf16, stores fp32
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # The whole path: a bf16-trained run exports a model that translates in fp32.
    train(smoke(3, **{"train.precision": "bf16"}), phantom_dirs["t1"], phantom_dirs["t2"], tmp_path / "run", progress=False)
    translated = Translator.load(tmp_path / "run" / "model.pt", "cpu").translate(
        load_image(phantom_dirs["t1"] / sorted(p.name for p in phantom_dirs["t1"].iterdir())[0]), Direction.T1_TO_T2
    )
    assert translated.array.dtype == np.float32 and np.isfinite(translated.array).all()


def test_settings_that_act_only_at_the_start_are_refused_on_resume(phantom_dirs: dict[str, Path], smoke_model: Path,
                                                                    tmp_path: Path) -> None:
    """--resume continues from the checkpoint's weights and random streams: --init or another --seed would be
    recorded in config.yaml without having acted, so they are refused in one line and the run is left as it was."""
    from typer.testing import CliRunner

    from mriganx.cli import app
    from mriganx.errors import MriganxError
    from tests.helpers import assert_one_line_error

    t1, t2, run = phantom_dirs["t1"], phantom_dirs["t2"], tmp_path / "run"
    train(smoke(2), t1, t2, run, progress=False)
    recorded, weights = (run / "config.yaml").read_text(), (run / "model.pt").read_bytes()
    base = ["train", "--t1-dir", str(t1), "--t2-dir", str(t2), "--out", str(run), "--resume", "--max-steps", "3"]
    for extra, needle in ((["--init", "default"], "cannot resume with --init default"),
                          (["--init", str(smoke_model)], "started with no --init"),
                          (["--seed", "7"], "cannot resume with --seed 7")):
        assert_one_line_error(CliRunner().invoke(app, [*base, *extra]), str(run / "config.yaml"), needle, "new --out")
    assert (run / "config.yaml").read_text() == recorded and (run / "model.pt").read_bytes() == weights
    assert "init: null" in recorded
    # The library refuses it too (the checkpoint's config is the record), before config.yaml is rewritten.
    with pytest.raises(MriganxError, match="cannot resume with --init"):
        train(smoke(3, **{"train.init": str(smoke_model)}), t1, t2, run, resume=True, progress=False)
    assert (run / "config.yaml").read_text() == recorded
    # The same seed, or no flag, resumes.
    assert CliRunner().invoke(app, [*base, "--seed", "0"]).exit_code == 0


def test_a_length_in_steps_and_one_in_epochs_are_refused_together(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mriganx.cli import app
    from tests.helpers import assert_one_line_error

    base = ["train", "--t1-dir", str(phantom_dirs["t1"]), "--t2-dir", str(phantom_dirs["t2"]), "--out", str(tmp_path / "run")]
    assert_one_line_error(CliRunner().invoke(app, [*base, "--steps", "10", "--epochs", "2"]), "--steps 10", "one way")
    assert_one_line_error(CliRunner().invoke(app, [*base, "--config", "shipped", "--epochs-decay", "2"]),
                          f"train.steps {load_config('shipped').train.steps}")
    assert not (tmp_path / "run").exists()


def test_prior_weight_holds_the_translation_near_its_tissue_map(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    """The same steps with and without ``train.prior_weight`` on T1w -> T2w: with it, that generator's output stays
    closer to its tissue map; the other direction, with weight 0, is held by nothing new."""
    from mriganx.data import load_slices

    config = smoke(12, **{"train.lr": 0.002, "train.ema_decay": 0.0})
    t1 = load_slices(phantom_dirs["t1"], config.data).slices[::7]
    departure = {}
    for weight in (0.0, 50.0):
        run = tmp_path / str(weight)
        result = train(override(config, {"train.prior_weight": [weight, 0.0]}), phantom_dirs["t1"], phantom_dirs["t2"],
                       run, progress=False)
        assert ("g/prior_t2" in result.losses) == (weight > 0)
        net = Translator.load(result.model_path, device="cpu").generators[Direction.T1_TO_T2]
        with torch.no_grad():
            departure[weight] = float((net(t1) - net.tissue_map(t1)).abs().mean())
    assert departure[50.0] < 0.7 * departure[0.0], departure


def test_prior_weight_needs_a_prior_and_two_weights() -> None:
    from mriganx.errors import MriganxError

    with pytest.raises(MriganxError, match="needs model.prior"):
        override(load_config("smoke"), {"model.prior": False, "train.prior_weight": [1.0, 0.0]})
    with pytest.raises(MriganxError, match="prior_weight must be two numbers"):
        override(load_config("smoke"), {"train.prior_weight": [1.0, -1.0]})


def test_a_model_with_a_tissue_prior_inverts_the_contrast_before_any_step(phantom_dirs: dict[str, Path], tmp_path: Path) -> None:
    """The prior is fitted on the training folders, saved in the model file and used by inference: with no training
    step at all the translation of a held-out T1w puts the brain's tissues in T2w order (CSF > GM > WM), and the
    paper's generator does not."""
    from mriganx.synthetic import Tissue

    labels = load_image(phantom_dirs["root"] / "all" / "sub-03_labels.nii.gz").array
    image = load_image(phantom_dirs["held_t1"])
    ordered = {}
    for prior in (True, False):
        result = train(smoke(0, **{"model.prior": prior}), phantom_dirs["t1"], phantom_dirs["t2"], tmp_path / f"{prior}",
                       progress=False)
        translated = Translator.load(result.model_path).translate(image, Direction.T1_TO_T2).array
        csf, gm, wm = (np.median(translated[np.isin(labels, tissues)])
                       for tissues in ((Tissue.CSF, Tissue.VENTRICLE), (Tissue.GM,), (Tissue.WM,)))
        ordered[prior] = csf > gm > wm
    assert ordered == {True: True, False: False}
