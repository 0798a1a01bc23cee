"""Where the time goes: this machine's ceiling, training cost per config, and conversion of a 181x217x181 volume.

    python benchmarks/bench.py [--quick] [--json benchmarks/last.json]

Prints a table and writes JSON. Everything runs in one process, so the ceiling and the measurements share the
machine's state. Timings are medians of a few repeats after a warm-up; the ceiling is the fastest of five.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mriganx.config import Direction, load_config
from mriganx.inference import Translator
from mriganx.io import load_image, save_like
from mriganx.memory import retain_freed_memory
from mriganx.slices import network_view
from mriganx.synthetic import write_subjects
from mriganx.training import CycleGAN


def timed(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1, best: bool = False) -> float:
    """Median seconds of ``repeats`` calls after ``warmup`` calls (the fastest call with ``best``: for ceilings)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times) if best else statistics.median(times)


def synchronised(fn: Callable[[], Any], device: torch.device) -> Callable[[], None]:
    """``fn`` followed by waiting for the GPU, so that timings count the work and not just its launch."""
    def run() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return run


def ceiling(device: torch.device) -> dict[str, float]:
    """Large float32 matmul and 3x3 convolutions (64 and 256 channels): the best of them is the ceiling."""
    a, b = torch.randn(4096, 4096, device=device), torch.randn(4096, 4096, device=device)
    out = {"matmul_gflops": 2 * 4096**3 / timed(synchronised(lambda: a @ b, device), repeats=5, best=True) / 1e9}
    for channels, size in ((64, 128), (256, 64)):
        x = torch.randn(4, channels, size, size, device=device)
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device)
        with torch.no_grad():
            seconds = timed(synchronised(lambda: conv(x), device), repeats=5, best=True)
            out[f"conv3x3_{channels}ch_gflops"] = 2 * 4 * channels**2 * 9 * size**2 / seconds / 1e9
    out["ceiling_gflops"] = max(out.values())
    return out


def training_cost(name: str, shape: tuple[int, int], repeats: int, device: torch.device) -> dict[str, float]:
    config = load_config(name)
    gan = CycleGAN(config, device)
    batch = config.train.batch_size
    size = config.data.crop_size or shape
    x = torch.rand(batch, config.model.channels, *size, device=device) * 2 - 1
    mask = torch.ones_like(x, dtype=torch.bool)
    step = synchronised(lambda: gan.step(x, mask, x, mask), device)
    # The first steps run slow (allocator and oneDNN primitive caches warming up), and single steps vary by 20 %
    # on this shared machine: three warm-up steps, then the median of several.
    seconds = timed(step, repeats=max(5, 3 * repeats), warmup=3)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    return {"batch": batch, "rows": size[0], "cols": size[1], "s_per_iter": seconds, "slices_per_s": batch / seconds,
            "gflop_per_iter": flops / 1e9, "gflops": flops / seconds / 1e9}


def convert_cost(model: Path, volume: Path, out_dir: Path, batch_size: int, repeats: int, device: torch.device) -> dict[str, float]:
    translator = Translator.load(model, device)
    parts: dict[str, list[float]] = {"load": [], "preprocess": [], "network": [], "postprocess": [], "write": []}
    for repeat in range(repeats + 1):
        t0 = time.perf_counter()
        image = load_image(volume)
        t1 = time.perf_counter()
        view = network_view(image, translator.data_config)
        t2 = time.perf_counter()
        out = translator.translate_slices(torch.from_numpy(view.slices)[:, None], torch.from_numpy(view.masks)[:, None],
                                          Direction.T1_TO_T2, batch_size)
        t3 = time.perf_counter()
        array = view.to_grid(out[:, 0].numpy())
        t4 = time.perf_counter()
        save_like(array, image, out_dir / "bench_t2.nii.gz", overwrite=True)
        t5 = time.perf_counter()
        if repeat:  # the first pass is a warm-up
            for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                parts[key].append(value)
    result = {key: statistics.median(values) for key, values in parts.items()}
    result["total"] = sum(result.values())
    return result


def growth(model: Path, threads: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Network time against the number of slices (at 220x184) and against the in-plane size (16 slices): both
    should grow linearly, i.e. a constant time per slice and per pixel."""
    translator = Translator.load(model, device)
    torch.set_num_threads(threads)

    def run(n: int, rows: int, cols: int) -> float:
        x = torch.rand(n, 1, rows, cols) * 2 - 1
        m = torch.ones_like(x, dtype=torch.bool)
        return timed(lambda: translator.translate_slices(x, m, Direction.T1_TO_T2, batch_size=8), repeats=2)

    slices = {n: run(n, 220, 184) for n in (16, 32, 64, 128)}
    sizes = {side: run(16, side, side) for side in (64, 128, 256)}
    return {
        "by_slices": {f"{n}": {"s": t, "ms_per_slice": 1000 * t / n} for n, t in slices.items()},
        "by_size": {f"{side}x{side}": {"s": t, "us_per_pixel": 1e6 * t / (16 * side * side)} for side, t in sizes.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, cpu config only")
    parser.add_argument("--json", default="benchmarks/last.json")
    parser.add_argument("--model", help="a trained model.pt to time conversion with (default: an untrained cpu model)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (training in the config's precision)")
    args = parser.parse_args()
    device = torch.device(args.device)
    repeats = 1 if args.quick else 3
    # Before anything is timed, so that the ceiling and the measurements share the allocator setting that training
    # and conversion use (MRIGANX_RELEASE_MEMORY=1 measures glibc's default instead).
    retained = retain_freed_memory()
    report: dict[str, Any] = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                                          "torch": torch.__version__, "device": str(device), "retained_freed_memory": retained}}
    print(f"freed memory retained (mriganx.memory): {'yes' if retained else 'no'}")
    if device.type == "cuda":
        report["machine"]["gpu"] = torch.cuda.get_device_name(device)
    report["ceiling"] = ceiling(device)
    print("ceiling: " + ", ".join(f"{k} {v:.0f}" for k, v in report["ceiling"].items()))
    report["training"] = {}
    for name in (["cpu"] if args.quick else ["cpu", "default", "smoke"]):
        cost = training_cost(name, (220, 184), repeats, device)
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
        threads = torch.get_num_threads()
        settings = [(8, threads)] if args.quick else [(1, threads), (4, threads), (8, threads), (16, threads), (8, 1)]
        for batch_size, n_threads in settings:
            torch.set_num_threads(n_threads)
            cost = convert_cost(model, subject["t1"], tmp_path, batch_size, repeats, device)
            report["convert"][f"batch{batch_size}_threads{n_threads}"] = cost
            print(f"convert 181x217x181 batch {batch_size:2d} threads {n_threads}: " + ", ".join(f"{k} {v:.2f}s" for k, v in cost.items()))
        torch.set_num_threads(threads)
        if not args.quick:
            report["growth"] = growth(model, threads, device)
            for n, row in report["growth"]["by_slices"].items():
                print(f"network, {n:>3s} slices of 220x184: {row['s']:.2f} s, {row['ms_per_slice']:.1f} ms per slice")
            for size, row in report["growth"]["by_size"].items():
                print(f"network, 16 slices of {size:>7s}: {row['s']:.2f} s, {row['us_per_pixel']:.2f} us per pixel")
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {report['peak_rss_mib']:.0f} MiB")
    if torch.cuda.is_available():
        report["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        print(f"peak GPU memory allocated: {report['peak_gpu_mib']:.0f} MiB")
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
