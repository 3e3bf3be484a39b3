"""The resume state of a training run: ONE safetensors file that holds everything `--resume` needs.

`train_state.safetensors` carries the raw weights, the EMA weights, the optimizer, the RNG, the permutation and
the position in the epoch, plus the run's metadata, and is replaced atomically. So a checkpoint is complete or
absent: a kill at any moment leaves either the previous state or the new one, never a mix. `model.safetensors`
and its JSON are exports made from the same step right after; resume never reads them (except from runs made
before this file held the weights).

Also here: the cleanup of the temp files an interrupted atomic write leaves.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_files import atomic_save_tensors

STATE_NAME = "train_state.safetensors"


@dataclass
class RunState:
    """What a resumed run starts from. `raw`/`ema` are None in states written before they were kept here."""

    meta: dict
    rng: Tensor
    noise_rng: Tensor | None = None
    perm: Tensor | None = None
    raw: dict[str, Tensor] | None = None
    ema: dict[str, Tensor] | None = None
    optimizer: dict[int, dict[str, Tensor]] = field(default_factory=dict)


def write_state(path: Path, state: RunState) -> None:
    tensors: dict[str, Tensor] = {"rng": state.rng}
    if state.noise_rng is not None:
        tensors["noise_rng"] = state.noise_rng
    if state.perm is not None:
        tensors["perm"] = state.perm
    for prefix, entries in (("net.", state.raw), ("ema.", state.ema)):
        for key, value in (entries or {}).items():
            tensors[prefix + key] = value
    for idx, st in state.optimizer.items():
        for key, value in st.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = json.dumps(state.meta)
    atomic_save_tensors(path, tensors, {"state": meta, "crc32": str(_checksum(meta, tensors))})


def _checksum(meta: str, tensors: dict[str, Tensor]) -> int:
    """CRC-32 of the metadata and every tensor (name, dtype, shape, bytes): safetensors has no checksum of its
    own, so without it a flipped bit in the weights, the RNG or the step would be resumed from without a word."""
    crc = zlib.crc32(meta.encode())
    for key in sorted(tensors):
        t = tensors[key]
        crc = zlib.crc32(f"{key}|{t.dtype}|{tuple(t.shape)}".encode(), crc)
        crc = zlib.crc32(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes(), crc)
    return crc


def read_state(path: Path) -> RunState:
    """The state in path, or a one-line error naming what to do when it is missing or unreadable."""
    if not path.is_file():
        raise DiffusionLabError(
            f"{path}: missing, so the run cannot be resumed exactly; start a new run with another --out"
        )
    corrupt = (
        f"{path}: cannot read the training state ({{}}); the file is corrupt, so this run cannot be resumed: "
        "start a new run with another --out, or sample from its model.safetensors"
    )
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
            meta = json.loads(metadata["state"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, KeyError, RecursionError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DiffusionLabError(corrupt.format(reason)) from None
    if "crc32" in metadata and metadata["crc32"] != str(_checksum(metadata["state"], tensors)):
        raise DiffusionLabError(corrupt.format("checksum mismatch"))
    if "rng" not in tensors or not isinstance(meta, dict) or "step" not in meta:
        raise DiffusionLabError(f"{path}: not a diffusionlab training state (no RNG or step); start a new run")
    problem = _check_state(meta, tensors)
    if problem:
        raise DiffusionLabError(corrupt.format(problem))
    state = RunState(meta, tensors["rng"], tensors.get("noise_rng"), tensors.get("perm"))
    for key, value in tensors.items():
        if key.startswith("net."):
            state.raw = state.raw or {}
            state.raw[key[4:]] = value
        elif key.startswith("ema."):
            state.ema = state.ema or {}
            state.ema[key[4:]] = value
        elif key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.optimizer.setdefault(int(idx), {})[name] = value
    return state


def _check_state(meta: dict, tensors: dict[str, Tensor]) -> str | None:
    """What is wrong with a state's fields (a file written by hand, or by another program), or None: resume
    then fails in one line here instead of with a traceback, or at a wrong position, later."""
    for key in ("epoch", "step", "batch_in_epoch"):
        if type(meta.get(key)) is not int or meta[key] < 0:
            return f"{key} is {meta.get(key)!r}, not a count"
    if not isinstance(meta.get("train_seconds"), (int, float)) or "lr_scheduler" not in meta:
        return "no train_seconds or lr_scheduler"
    groups = meta.get("param_groups")
    is_group = lambda g: isinstance(g, dict) and isinstance(g.get("params"), list)  # noqa: E731
    if not isinstance(groups, list) or not groups or not all(map(is_group, groups)):
        return "param_groups is not a list of optimizer groups"
    mappings = (meta.get("config", {}), meta["lr_scheduler"] or {})
    if not all(isinstance(m, dict) for m in mappings) or not isinstance(meta.get("history", []), list):
        return "config, lr_scheduler or history is not of its type"
    return _check_identity(meta) or _check_tensors(tensors)


def _check_identity(meta: dict) -> str | None:
    """The run id, the log's digest and the epoch's losses so far (states from before them have none)."""
    run_id, digest, losses = meta.get("run_id"), meta.get("log_sha256"), meta.get("epoch_losses", [])
    if run_id is not None and not (isinstance(run_id, str) and run_id.isascii() and run_id.isalnum()):
        return "run_id is not a run id"
    hexdigits = set("0123456789abcdef")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= hexdigits):
        return "log_sha256 is not a SHA-256"
    number = lambda v: type(v) in (int, float)  # noqa: E731
    if not (isinstance(losses, list) and len(losses) <= meta["batch_in_epoch"] and all(map(number, losses))):
        return "epoch_losses is not a list of the epoch's losses"
    return None


def _check_tensors(tensors: dict[str, Tensor]) -> str | None:
    for key in ("rng", "noise_rng"):
        if key in tensors and (tensors[key].dtype != torch.uint8 or tensors[key].dim() != 1):
            return f"{key} is not a generator state"
    try:
        torch.Generator().set_state(tensors["rng"])
    except RuntimeError:
        return "rng is not a CPU generator state"
    perm = tensors.get("perm")
    if perm is not None and (
        perm.dtype != torch.int64 or perm.dim() != 1 or not perm.sort().values.equal(torch.arange(len(perm)))
    ):
        return "perm is not a permutation"
    net = {k[4:]: v.shape for k, v in tensors.items() if k.startswith("net.")}
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    if net and any(net.get(k) != v.shape or not v.is_floating_point() for k, v in ema.items()):
        return "the EMA weights do not match the raw weights"
    slots: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        parts = key.split(".", 2)
        if parts[0] == "optim":
            if len(parts) != 3 or not (parts[1].isascii() and parts[1].isdigit()):
                return f"unknown entry {key!r}"
            slots.setdefault(parts[1], {})[parts[2]] = value
    return _check_optimizer(slots)


def _check_optimizer(slots: dict[str, dict[str, Tensor]]) -> str | None:
    """Each parameter's optimizer entries: the same names for all, one shape of floats, a step count >= 0."""
    names = {tuple(sorted(slot)) for slot in slots.values()}
    if len(names) > 1:
        return "the optimizer entries differ between parameters (one is missing)"
    for idx, slot in slots.items():
        step = slot.get("step")
        if step is not None and (step.dim() != 0 or not step.is_floating_point() or not (step >= 0).item()):
            return f"the optimizer step of parameter {idx} is not a count"
        moments = [v for k, v in slot.items() if k != "step"]
        if any(not v.is_floating_point() or v.shape != moments[0].shape for v in moments):
            return f"the optimizer moments of parameter {idx} differ in shape or are not floats"
    return None


def clean_temp_files(run_dir: Path) -> list[Path]:
    """Remove the temp files an interrupted atomic write leaves (.NAME.XXXX.tmp), in the run and its snapshots."""
    removed = []
    for folder in (run_dir, run_dir / "snapshots", run_dir / "snapshots" / "raw"):
        if folder.is_dir():
            for p in folder.glob(".*.tmp"):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed
