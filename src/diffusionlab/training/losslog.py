"""loss.csv, one row per optimizer step (step, epoch, loss, lr): written in whole rows, read back tolerating a torn
last row, and cut back to the saved step on resume. `StepLosses` carries the losses from the device to it."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import torch
from torch import Tensor

from diffusionlab.distributed import SINGLE, DistContext, all_reduce_mean
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_files import atomic_write_bytes

LOG_NAME = "loss.csv"
LOG_HEADER = ["step", "epoch", "loss", "lr"]


def read_log_rows(path: Path) -> list[dict]:
    """The whole rows of loss.csv as dicts (step:int, epoch:int, loss:float, lr:float); a torn or garbled row is
    skipped. Our rows are plain numbers, so lines are split on commas (no CSV quoting that could swallow rows)."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header = [h.strip() for h in lines[0].split(",")] if lines else []
    if lines and not set(LOG_HEADER) <= set(header):
        raise DiffusionLabError(
            f"{path}: not a loss log of ours (first line {lines[0][:60]!r}; want step,epoch,loss,lr); move it away"
        )
    rows = (_row(line, header) for line in lines[1:])
    return [row for row in rows if row is not None]  # None: a row cut short by a kill, or garbage


def _row(line: str, header: list[str]) -> dict | None:
    fields = line.split(",")
    if len(fields) != len(header):
        return None
    try:
        step, epoch, loss, lr = (fields[header.index(k)] for k in LOG_HEADER)
        return {"step": int(step), "epoch": int(epoch), "loss": float(loss), "lr": float(lr)}
    except ValueError:
        return None


# -- what a checkpoint has seen of the log: the bytes up to its step, kept as a SHA-256 in the checkpoint ----------
def log_prefix(data: bytes, last_step: int) -> bytes:
    """The log's bytes up to and including the first row of step last_step or later (the header alone for step
    0). A row before it that is garbage or torn stays in, so that it changes the digest."""
    lines = data.splitlines(keepends=True)
    if last_step == 0:
        return b"".join(lines[:1])
    for end, line in enumerate(lines[1:], start=2):
        head = line.split(b",", 1)[0].strip()
        if head.isdigit() and int(head) >= last_step:
            return b"".join(lines[:end])
    return data


def log_digest(path: Path, last_step: int) -> str:
    """SHA-256 of loss.csv up to the row of last_step: saved in the checkpoint of that step."""
    return hashlib.sha256(log_prefix(path.read_bytes(), last_step)).hexdigest()


def check_log_belongs(path: Path, last_step: int, digest: str, checkpoint: str) -> None:
    """--resume: the log's rows up to the checkpoint's step must be those the checkpoint saw (rows after it are
    dropped, as a kill leaves them); else one line says how they differ."""
    if not path.is_file():
        what = "not a regular file" if path.exists() else "missing"
        raise DiffusionLabError(
            f"{path}: {what}; it held the losses of steps 1-{last_step} that the checkpoint ({checkpoint}) "
            "continues: put the run's loss.csv back to resume, or start a new run with another --out"
        )
    if log_digest(path, last_step) != digest:
        raise DiffusionLabError(
            f"{path}: the log does not belong to the checkpoint ({checkpoint}): {_difference(path, last_step)}; "
            "put back the run's own loss.csv, or start a new run with another --out"
        )


def _difference(path: Path, last_step: int) -> str:
    """How a log that fails its digest differs from what the checkpoint saw, in words."""
    lines = log_prefix(path.read_bytes(), last_step).decode("utf-8", errors="replace").splitlines()
    if not lines:
        return "it is empty"
    header = [h.strip() for h in lines[0].split(",")]
    if not set(LOG_HEADER) <= set(header):
        return f"its first line {lines[0][:40]!r} is not the header step,epoch,loss,lr"
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        row = _row(line, header)
        if row is None:
            return f"line {number} ({line[:40]!r}) is not a whole row"
        rows.append(row["step"])
    if rows != list(range(1, len(rows) + 1)):
        return f"its steps are not 1, 2, 3, ... in order (line {_first_gap(rows) + 2})"
    if len(rows) < last_step:
        return f"it ends at step {len(rows)}"
    return f"its rows up to step {last_step} hold other values (the log of another run, or edited)"


def _first_gap(steps: list[int]) -> int:
    return next(i for i, step in enumerate(steps) if step != i + 1)


def truncate_log(path: Path, last_step: int) -> int:
    """Keep the whole rows up to last_step: what the state says was trained (the rest is redone on resume). The
    number of lines dropped (rows of later steps, and a torn or garbled last row)."""
    if not path.is_file():
        return 0
    rows = [r for r in read_log_rows(path) if r["step"] <= last_step]
    lines = [",".join(LOG_HEADER)]
    lines += [f"{r['step']},{r['epoch']},{r['loss']:.6g},{r['lr']:.6g}" for r in rows]
    data = ("\n".join(lines) + "\n").encode()
    dropped = len(path.read_bytes().splitlines()) - len(lines)
    # replaced atomically: a kill while resuming must not lose the log of the steps already trained
    atomic_write_bytes(path, data)
    return max(0, dropped)


def read_loss_log(path: str | Path) -> list[float]:
    return [r["loss"] for r in read_log_rows(Path(path))]


class LossLog:
    """loss.csv, one whole row per step: rows are buffered and written whole on flush (a kill can tear only the
    last line of a write, which the reader and resume drop). path None (not rank 0): writes nothing."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rows: list[str] = []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_file() or path.stat().st_size == 0:
                path.write_text(",".join(LOG_HEADER) + "\n")

    def write(self, step: int, epoch: int, loss: float, lr: float) -> None:
        if self.path is not None:
            self.rows.append(f"{step},{epoch},{loss:.6g},{lr:.6g}\n")

    def flush(self) -> None:
        if self.path is not None and self.rows:
            with self.path.open("a") as f:
                f.write("".join(self.rows))
                f.flush()
                os.fsync(f.fileno())
            self.rows.clear()

    close = flush


class StepLosses:
    """The losses of the steps since the last flush stay on the device (no host synchronisation per step); a flush
    brings them over at once and hands them to the log, the epoch's list and the progress bar."""

    def __init__(self, log: LossLog, bar, ctx: DistContext = SINGLE) -> None:
        self.log, self.bar, self.ctx = log, bar, ctx
        self.steps: list[tuple[int, int, float]] = []  # (step, epoch, lr) of each pending loss
        self.values: list[Tensor] = []
        self.epoch: list[float] = []  # this epoch's flushed losses

    def add(self, step: int, epoch: int, lr: float, loss: Tensor) -> None:
        """One step's loss, left on the device until the next flush."""
        self.steps.append((step, epoch, lr))
        self.values.append(loss)

    def flush(self, reduce: bool = True) -> None:
        if not self.steps:
            return
        values = torch.stack(self.values).float()
        if reduce:
            values = all_reduce_mean(values, self.ctx)  # the global-batch loss (rank shares averaged)
        diverged = None
        for (step, epoch, lr), value in zip(self.steps, values.tolist(), strict=True):
            self.epoch.append(value)
            self.log.write(step, epoch, value, lr)
            diverged = diverged or (None if math.isfinite(value) else (step, value))
        self.bar.set_postfix(loss=f"{self.epoch[-1]:.4f}")
        self.steps.clear()
        self.values.clear()
        if diverged:  # the weights are NaN from here on: stop before a checkpoint keeps them
            raise DiffusionLabError(
                f"the training loss is {diverged[1]} at step {diverged[0]}: the run diverged (too high an --lr?), "
                "so it stopped before saving that step; start a new run with a lower --lr"
            )

    def take_epoch(self) -> list[float]:
        """This epoch's losses; the next epoch starts a list of its own."""
        done, self.epoch = self.epoch, []
        return done

    def close(self) -> None:
        self.log.close()
        self.bar.close()


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
