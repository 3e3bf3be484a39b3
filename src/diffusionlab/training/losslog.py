"""loss.csv, one row per optimizer step (step, epoch, loss, lr): written in whole rows, read back tolerating a torn
last row, and cut back to the saved step on resume. `StepLosses` carries the losses from the device to it."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from diffusionlab.checkpoint import atomic_write_bytes
from diffusionlab.distributed import SINGLE, DistContext, all_reduce_mean
from diffusionlab.errors import DiffusionLabError

LOG_NAME = "loss.csv"
LOG_HEADER = ["step", "epoch", "loss", "lr"]


def read_log_rows(path: Path) -> list[dict]:
    """The whole rows of loss.csv as dicts (step:int, epoch:int, loss:float, lr:float); a torn or garbled row is
    skipped. Our rows are plain numbers, so lines are split on commas (no CSV quoting that could swallow rows)."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header = [h.strip() for h in lines[0].split(",")] if lines else []
    if lines and not {"step", "epoch", "loss", "lr"} <= set(header):
        raise DiffusionLabError(
            f"{path}: not a loss log of ours (first line {lines[0][:60]!r}; want step,epoch,loss,lr); move it away"
        )
    cols = [header.index(k) for k in ("step", "epoch", "loss", "lr")] if lines else []
    rows = []
    for line in lines[1:]:
        fields = line.split(",")
        if len(fields) != len(header):
            continue  # a row cut short by a kill
        try:
            step, epoch, loss, lr = (fields[i] for i in cols)
            rows.append({"step": int(step), "epoch": int(epoch), "loss": float(loss), "lr": float(lr)})
        except ValueError:
            continue  # garbage: not a logged step
    return rows


def truncate_log(path: Path, last_step: int) -> None:
    """Keep the whole rows up to last_step: what the state says was trained (the rest is redone on resume)."""
    if not path.is_file():
        return
    rows = [r for r in read_log_rows(path) if r["step"] <= last_step]
    lines = [",".join(LOG_HEADER)]
    lines += [f"{r['step']},{r['epoch']},{r['loss']:.6g},{r['lr']:.6g}" for r in rows]
    # replaced atomically: a kill while resuming must not lose the log of the steps already trained
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


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

    def flush(self, reduce: bool = True) -> None:
        if not self.steps:
            return
        values = torch.stack(self.values).float()
        if reduce:
            values = all_reduce_mean(values, self.ctx)  # the global-batch loss (rank shares averaged)
        for (step, epoch, lr), value in zip(self.steps, values.tolist(), strict=True):
            self.epoch.append(value)
            self.log.write(step, epoch, value, lr)
        self.bar.set_postfix(loss=f"{self.epoch[-1]:.4f}")
        self.steps.clear()
        self.values.clear()

    def take_epoch(self) -> list[float]:
        """This epoch's losses; the next epoch starts a list of its own."""
        done, self.epoch = self.epoch, []
        return done

    def close(self) -> None:
        self.log.close()
        self.bar.close()


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
