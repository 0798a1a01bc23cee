"""Where the time goes: this machine's ceiling, training cost per config, and conversion of a 181x217x181 volume.

    python benchmarks/bench.py [--quick] [--json benchmarks/last.json]

Prints a table and writes JSON. Everything runs in one process, so the ceiling and the measurements share the
machine's state. Timings are medians of a few repeats after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from mriganx.config import Direction, load_config
from mriganx.frame import from_slices
from mriganx.inference import Translator
from mriganx.data import frame_slices
from mriganx.io import load_image, save_like
from mriganx.synthetic import write_subjects
from mriganx.training import CycleGAN


def timed(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def ceiling() -> dict[str, float]:
    """Large float32 matmul and 3x3 convolutions (64 and 256 channels): the best of them is the ceiling."""
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    out = {"matmul_gflops": 2 * 4096**3 / timed(lambda: a @ b) / 1e9}
    for channels, size in ((64, 128), (256, 64)):
        x, conv = torch.randn(4, channels, size, size), torch.nn.Conv2d(channels, channels, 3, padding=1)
        with torch.no_grad():
            out[f"conv3x3_{channels}ch_gflops"] = 2 * 4 * channels**2 * 9 * size**2 / timed(lambda: conv(x)) / 1e9
    out["ceiling_gflops"] = max(out.values())
    return out


def training_cost(name: str, shape: tuple[int, int], repeats: int) -> dict[str, float]:
    config = load_config(name)
    gan = CycleGAN(config, torch.device("cpu"))
    batch = config.train.batch_size
    size = config.data.crop_size or shape
    x = torch.rand(batch, 1, *size) * 2 - 1
    mask = torch.ones_like(x, dtype=torch.bool)
    step = lambda: gan.step(x, mask, x, mask)  # noqa: E731
    seconds = timed(step, repeats)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    return {"batch": batch, "rows": size[0], "cols": size[1], "s_per_iter": seconds, "slices_per_s": batch / seconds,
            "gflop_per_iter": flops / 1e9, "gflops": flops / seconds / 1e9}


def convert_cost(model: Path, volume: Path, out_dir: Path, batch_size: int, repeats: int) -> dict[str, float]:
    translator = Translator.load(model, "cpu")
    parts: dict[str, list[float]] = {"load": [], "preprocess": [], "network": [], "postprocess": [], "write": []}
    for repeat in range(repeats + 1):
        t0 = time.perf_counter()
        image = load_image(volume)
        t1 = time.perf_counter()
        normalised, masks, _ = frame_slices(image, translator.data_config)
        t2 = time.perf_counter()
        out = translator.translate_slices(torch.from_numpy(normalised)[:, None], torch.from_numpy(masks)[:, None],
                                          Direction.T1_TO_T2, batch_size)
        t3 = time.perf_counter()
        array = from_slices(out[:, 0].numpy(), image.affine)
        t4 = time.perf_counter()
        save_like(array, image, out_dir / "bench_t2.nii.gz", overwrite=True)
        t5 = time.perf_counter()
        if repeat:  # the first pass is a warm-up
            for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                parts[key].append(value)
    result = {key: statistics.median(values) for key, values in parts.items()}
    result["total"] = sum(result.values())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, cpu config only")
    parser.add_argument("--json", default="benchmarks/last.json")
    parser.add_argument("--model", help="a trained model.pt to time conversion with (default: an untrained cpu model)")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    report: dict[str, Any] = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                                          "torch": torch.__version__}}
    report["ceiling"] = ceiling()
    print("ceiling: " + ", ".join(f"{k} {v:.0f}" for k, v in report["ceiling"].items()))
    report["training"] = {}
    for name in (["cpu"] if args.quick else ["cpu", "default", "smoke"]):
        cost = training_cost(name, (220, 184), repeats)
        cost["fraction_of_ceiling"] = cost["gflops"] / report["ceiling"]["ceiling_gflops"]
        report["training"][name] = cost
        print(f"train {name:8s} batch {cost['batch']} {cost['rows']}x{cost['cols']}: {cost['s_per_iter']:.3f} s/it, "
              f"{cost['slices_per_s']:.2f} slices/s, {cost['gflop_per_iter']:.1f} GFLOP/it, {cost['gflops']:.0f} GFLOP/s "
              f"({100 * cost['fraction_of_ceiling']:.0f}% of the ceiling)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        subject = write_subjects(tmp_path / "vol", 1, seed=0)[0]
        model = Path(args.model) if args.model else _untrained_model(tmp_path)
        report["convert"] = {}
        for batch_size in ([8] if args.quick else [1, 4, 8, 16]):
            cost = convert_cost(model, subject["t1"], tmp_path, batch_size, repeats)
            report["convert"][f"batch{batch_size}"] = cost
            print(f"convert 181x217x181 batch {batch_size:2d}: " + ", ".join(f"{k} {v:.2f}s" for k, v in cost.items()))
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {report['peak_rss_mib']:.0f} MiB")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1))


def _untrained_model(folder: Path) -> Path:
    """A cpu-config model.pt with initial weights: the network cost is the same as a trained one's."""
    from mriganx.config import override
    from mriganx.training import Trainer

    data = write_subjects(folder / "train", 2, seed=1, shape=(45, 54, 45), spacing=4.0)
    (folder / "t1").mkdir()
    (folder / "t2").mkdir()
    data[0]["t1"].rename(folder / "t1" / data[0]["t1"].name)
    data[1]["t2"].rename(folder / "t2" / data[1]["t2"].name)
    trainer = Trainer(override(load_config("cpu"), {"train.max_steps": 0}), folder / "t1", folder / "t2", folder / "run", progress=False)
    return trainer.export_model()


if __name__ == "__main__":
    main()
