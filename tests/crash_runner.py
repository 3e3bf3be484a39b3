"""The crash tests' runner: `diffusionlab train ...` with a deterministic crash (tests/test_crash.py).

Usage: python crash_runner.py POINT TRAIN-ARGS...; POINT says where the process dies.

Kill points:
  none                   no crash; copy train_state.safetensors to KEEP_STATES/step_S after every save
  step:S                 SIGKILL right after optimizer step S (between two checkpoints)
  NAME@S:MODE            SIGKILL at the atomic replace of NAME (relative to the run) in the save at step S
                         (S=0: before the first step, i.e. during resume); MODE: empty (temp file made, nothing
                         written), half (temp file half written), full (written, not replaced), after (replaced)
  twice@S                two SIGTERMs while step S is being computed (after its noise is drawn)
  again@S                a SIGINT while step S is computed, a second one inside the save that stop makes after it
  SIGTERM@S, SIGINT@S    one such signal while step S is being computed (a user's kill or Ctrl-C mid-epoch)
The step and the point of the kill go to the JSON file in env KILL_RECORD first.
"""

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import diffusionlab.training.trainer as trainer
from diffusionlab.cli import main

point, args = sys.argv[1], sys.argv[2:]
run_dir = Path(args[args.index("--out") + 1])
keep = os.environ.get("KEEP_STATES")
current = {"step": 0}
real_step, real_replace, real_loss = trainer.Trainer._train_step, os.replace, trainer.training_loss


def die() -> None:
    Path(os.environ["KILL_RECORD"]).write_text(json.dumps({"point": point, "step": current["step"]}))
    os.kill(os.getpid(), signal.SIGKILL)


def train_step(self, *a):
    current["step"] = self.step + 1  # the step in flight
    loss = real_step(self, *a)
    if point == f"step:{self.step}":
        die()
    return loss


def replace(src, dst, *a, **k):
    name = os.path.relpath(dst, run_dir)
    if current.get("first_sigint"):  # again@S: the save of the stop is under way; cut it with a second Ctrl-C
        current["first_sigint"] = False
        os.kill(os.getpid(), signal.SIGINT)
    target, _, mode = point.partition(":")
    hit = target == f"{name}@{current['step']}"
    if hit and mode in ("empty", "half"):
        os.truncate(src, 0 if mode == "empty" else os.path.getsize(src) // 2)
    if hit and mode != "after":
        die()
    real_replace(src, dst, *a, **k)
    if hit:
        die()
    if keep and name == "train_state.safetensors":
        shutil.copy(dst, Path(keep) / f"step_{current['step']}.safetensors")


def loss(*a, **k):
    value = real_loss(*a, **k)
    if point == f"twice@{current['step']}":
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
    if point in (f"SIGTERM@{current['step']}", f"SIGINT@{current['step']}"):
        os.kill(os.getpid(), signal.Signals[point.partition("@")[0]])
    if point == f"again@{current['step']}":
        os.kill(os.getpid(), signal.SIGINT)
        current["first_sigint"] = True
    return value


trainer.Trainer._train_step = train_step
trainer.training_loss = loss  # the name the train step calls
os.replace = replace
sys.argv = ["diffusionlab", *args]
main(args)
