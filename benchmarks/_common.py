"""Shared helpers: each measured variant runs in its own fresh process (so its peak memory is its own), one
variant after the other, all from the one command that prints the ratios."""

from __future__ import annotations

import datetime
import json
import multiprocessing as mp
import platform
import resource
import shlex
import sys
import time
from pathlib import Path

import torch


def read_rows(path: Path | None) -> list[dict]:
    """The measured rows of a resumable table: one JSON object per line; none when the file is absent."""
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path and path.exists() else []


def append_row(path: Path, row: dict) -> None:
    """Append one measured row as soon as it is done, so a killed run keeps every finished row."""
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def model_and_classifier(spec: str) -> tuple:
    """A model (shipped name or path) on the CPU and the shipped classifier of its data set."""
    from diffusionlab.backends import load_model
    from diffusionlab.evaluation.classifier import load_classifier

    model = load_model(spec, "cpu")
    return model, load_classifier(model.config.get("data", "mnist"), "cpu")


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} torch threads"


def header(device: str, threads: int) -> str:
    load = ""
    try:
        load = " load average " + open("/proc/loadavg").read().split()[0]
    except OSError:
        pass
    return (
        f"date {datetime.datetime.now().isoformat(timespec='seconds')}, device {device} "
        f"({device_name(device) if device.startswith('cuda') else f'{platform.machine()} CPU, {threads} torch thread(s)'}),"
        f" torch {torch.__version__},{load}\ncommand: {shlex.join([sys.executable.split('/')[-1], *sys.argv])}"
    )


def _child(queue, target, threads, kwargs):
    torch.set_num_threads(threads)
    try:
        if kwargs.get("device", "cpu").startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        result = target(**kwargs)
        result["peak_cpu_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if kwargs.get("device", "cpu").startswith("cuda"):
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        queue.put(result)
    except BaseException as e:  # report, do not hang the parent
        queue.put({"error": f"{type(e).__name__}: {e}"})


def isolated(target, threads: int = 1, **kwargs) -> dict:
    """Run target(**kwargs) -> dict in a fresh spawned process; add its peak memory (maxrss, CUDA max allocated)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, target, threads, kwargs))
    start = time.perf_counter()
    proc.start()
    result = queue.get()
    proc.join()
    result["process_wall_s"] = time.perf_counter() - start
    if "error" in result:
        raise RuntimeError(result["error"])
    return result


def fast_path_variants(fn, fp32_what: str, cuda_extra: str) -> dict:
    """The fast path's rows of a benchmark, one per --precision (name -> (fn, kwargs)): fp32, bf16 forced and auto,
    measured in the same command so that auto is seen beside the two it chooses between."""
    return {
        f"ours --fast, fp32 ({fp32_what})": (fn, {"fast": True, "precision": "fp32"}),
        "ours --fast, bf16 (forced: bf16 autocast, emulated where the CPU has no native bf16)": (
            fn,
            {"fast": True, "precision": "bf16"},
        ),
        f"ours --fast, auto (the default: bf16 only where measured faster; CUDA: {cuda_extra})": (
            fn,
            {"fast": True, "precision": "auto"},
        ),
    }
