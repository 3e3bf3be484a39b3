"""Which precision our UNets run in: fp32, or bf16 autocast, chosen by measurement ("auto").

Native bf16 is not a reason to pick it: on a Xeon with AVX512-BF16 but no AMX the course UNet's train step was
0.91x and sampling 1.00x the fp32 reference, while fp32 was 1.10x and 1.38x (issue 36); with AMX bf16 was 3.2x.
So "auto" takes bf16 on a CPU only where a short micro-benchmark of the UNet's train step (forward and backward,
the course's width) on this machine says bf16 is faster by a margin. The verdict is cached per CPU (model name,
family, bf16 flags), torch version and thread count in the user cache (`$DIFFUSIONLAB_CACHE/precision.json`); a
corrupt or unwritable cache is ignored. A CPU without native bf16 gets fp32 without measuring (emulated bf16 is
~10x slower); CUDA gets bf16 where the GPU computes it. The numeric contract of each precision is in
docs/precision.md.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from diffusionlab.environment import env_choice
from diffusionlab.errors import DiffusionLabError

PRECISIONS = ("auto", "fp32", "bf16")
MIN_SPEEDUP = 1.1  # bf16 must beat fp32 by this much: a tie is not worth bf16's rounding
CACHE_NAME = "precision.json"
_default: dict[str, str | None] = {"precision": None}  # set by the CLI's --precision for the whole command


@dataclass(frozen=True)
class Precision:
    """A decision: `name` is "fp32" or "bf16", `reason` says why in words (provenance, the run's first line)."""

    name: str
    reason: str

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.name == "bf16" else None

    def describe(self) -> str:
        return f"precision {self.name} ({self.reason})"


def check_precision(value: str) -> str:
    if value not in PRECISIONS:
        raise DiffusionLabError(f"unknown precision {value!r}; choose {', '.join(PRECISIONS)}")
    return value


def set_default_precision(value: str | None) -> None:
    """The precision every model loaded from now on runs in, unless a call names one (the CLI's --precision)."""
    _default["precision"] = None if value is None else check_precision(value)


def requested_precision(value: str | None = None) -> str:
    """What was asked for: the call's value, else --precision, else $DIFFUSIONLAB_PRECISION, else auto."""
    chosen = value or _default["precision"] or env_choice("DIFFUSIONLAB_PRECISION", PRECISIONS) or "auto"
    return check_precision(chosen)


def bf16_native(device: torch.device) -> bool:
    """Does this device compute bf16 in hardware (AVX512-BF16 or AMX on a CPU)? Not the same as faster."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def choose_precision(
    device: torch.device | str, requested: str | None = None, cache_dir: Path | None = None
) -> Precision:
    """fp32 or bf16 for `device`: as asked, or for "auto" by hardware and (CPU) a cached measurement."""
    device = torch.device(device)
    asked = requested_precision(requested)
    if asked != "auto":
        return Precision(asked, "asked for")
    if device.type == "cuda":
        return (
            Precision("bf16", "auto: the GPU computes bf16")
            if bf16_native(device)
            else Precision("fp32", "auto: no bf16 on this GPU")
        )
    if device.type != "cpu" or not bf16_native(device):
        return Precision("fp32", f"auto: {cpu_name()} has no native bf16")
    speedup, cached = measured_bf16_speedup(cache_dir)
    where = "cached measurement" if cached else "measured now"
    if speedup >= MIN_SPEEDUP:
        return Precision("bf16", f"auto: bf16 train step {speedup:.2f}x fp32 on this CPU ({where})")
    return Precision(
        "fp32", f"auto: bf16 train step only {speedup:.2f}x fp32 on this CPU ({where}), needs {MIN_SPEEDUP}x"
    )


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux); {} elsewhere."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_name(info: dict[str, str] | None = None) -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, or `info` read from it), as the run's first line says it."""
    info = _cpuinfo() if info is None else info
    return info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_signature() -> str:
    """The model name plus family, model and the bf16 flags: cloud VMs call several generations "AMD EPYC"
    (an AVX2-only one and one with AVX512-BF16 were both seen here), and the verdict must not cross them."""
    info = _cpuinfo()
    flags = sorted(set(info.get("flags", "").split()) & {"avx512_bf16", "amx_bf16", "amx_tile"})
    parts = [cpu_name(info)]  # /proc/cpuinfo read once
    if "cpu family" in info or "model" in info:
        parts.append(f"family {info.get('cpu family', '?')} model {info.get('model', '?')}")
    parts.append(" ".join(flags) or "no bf16 flags")
    return ", ".join(parts)


def cache_key() -> str:
    return f"{cpu_signature()} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def measured_bf16_speedup(cache_dir: Path | None = None) -> tuple[float, bool]:
    """(fp32 time / bf16 time of the UNet train step, whether it came from the cache); measured and cached once."""
    path = (cache_dir if cache_dir is not None else _user_cache()) / CACHE_NAME
    verdicts = _read_cache(path)
    entry = verdicts.get(cache_key())
    if isinstance(entry, dict) and isinstance(entry.get("bf16_speedup"), (int, float)) and entry["bf16_speedup"] > 0:
        return float(entry["bf16_speedup"]), True
    speedup = bf16_speedup_now()
    verdicts[cache_key()] = {"bf16_speedup": round(speedup, 3), "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_cache(path, verdicts)
    return speedup, False


def bf16_speedup_now(batch: int = 32, repeats: int = 3) -> float:
    """Time the course UNet's train step (class-conditioned, width 64, channels_last) in fp32 and under bf16
    autocast on the CPU: a warm-up step each, then `repeats` rounds that alternate the two, the best of each. A few
    seconds on a 2-core CPU. Alternating keeps a change in the machine's load from falling on one side only (run
    one after the other, beside other jobs, the verdict on one Zen 5 ranged 1.39x-2.82x; idle, 1.70-1.88x)."""
    from diffusionlab.networks.unet import UNet, UNetConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = UNet(UNetConfig(hidden=64, time_conditioned=True, num_classes=10)).to(memory_format=torch.channels_last)
        x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        t, c = torch.rand(batch), torch.nn.functional.one_hot(torch.arange(batch) % 10, 10).float()

    def step(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x, t, c)
        ((out.float() - x) ** 2).mean().backward()
        net.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    step(False), step(True)  # warm-up: first calls pick kernels and allocate
    rounds = [(step(False), step(True)) for _ in range(repeats)]
    return min(r[0] for r in rounds) / min(r[1] for r in rounds)


def _user_cache() -> Path:
    from diffusionlab.data import default_cache_dir

    return default_cache_dir()


def _read_cache(path: Path) -> dict:
    """The cached verdicts; {} when missing, unreadable or not what we wrote (a corrupt cache is ignored)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, verdicts: dict) -> None:
    """Best effort: a cache we cannot write only means measuring again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(verdicts, indent=1))
        tmp.replace(path)
    except OSError:
        pass
