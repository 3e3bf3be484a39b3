"""Training: the course's trainers (B1 denoiser, B2 time/class DDPM, B3 flow matching), checkpoints and resume.

config.py       TrainConfig, the recipes (per-kind defaults), the JSON beside the weights
batches.py      epoch permutations and batches (sharded across ranks)
loss.py         training_loss: one pure function of a batch
trainer.py      the Trainer and its loop
checkpoints.py  saving a trainer to its run folder and resuming it from there
state.py        the resume state file (train_state.safetensors)
losslog.py      loss.csv
ema.py          the moving average of the weights
resume.py       open_run: a new run or the continuation of one
runlock.py      one writer per run folder (an OS file lock)
stop.py         SIGINT/SIGTERM: stop at a step boundary
"""

from diffusionlab.training.config import KINDS, OBJECTIVES, TrainConfig, model_config, recipe
from diffusionlab.training.loss import one_hot_dropped, training_loss
from diffusionlab.training.losslog import read_loss_log
from diffusionlab.training.resume import open_run
from diffusionlab.training.trainer import EpochEnd, Trainer

__all__ = [
    "KINDS",
    "OBJECTIVES",
    "EpochEnd",
    "TrainConfig",
    "Trainer",
    "model_config",
    "one_hot_dropped",
    "open_run",
    "read_loss_log",
    "recipe",
    "training_loss",
]
