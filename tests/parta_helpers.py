"""Small stand-in models for the Part A tests (protocol-compatible, deterministic, no weights)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from diffusionlab.model_kinds import DDPM, IF
from diffusionlab.model_protocol import DiffusionModel, Prediction
from diffusionlab.schedule import NoiseSchedule


class FormulaModel(DiffusionModel):
    """eps and (optionally) learned-range variance values are fixed smooth functions of (x_t, t, cond): an IF-kind
    model with variance (IF's scheduler settings: DDPM steps, learned variance, dynamic thresholding), else a DDPM."""

    name = "formula"
    conditioned = True

    def __init__(self, schedule: NoiseSchedule, image_shape=(3, 16, 16), value_range=(-1.0, 1.0), variance=True):
        self.schedule = schedule
        self.image_shape = image_shape
        self.value_range = value_range
        self.device = torch.device("cpu")
        self.predicts_variance = variance
        self.kind = IF if variance else DDPM
        self.calls = 0

    def predict(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Prediction:
        self.calls += 1
        tt = t.float().view(-1, 1, 1, 1) / self.schedule.num_steps
        c = cond.float().reshape(cond.shape[0], -1).sum(1).view(-1, 1, 1, 1)
        eps = 0.3 * torch.sin(2 * x_t + tt) + 0.1 * c + 0.05 * x_t.roll(1, -1)
        var = torch.tanh(x_t + tt - 0.5 * c) if self.predicts_variance else None
        return Prediction(eps, var)

    def encode(self, prompts: list[str]) -> Tensor:
        return torch.tensor([[float(len(p))] for p in prompts])

    def null(self, n: int) -> Tensor:
        return torch.zeros(n, 1)


class GaussianDataModel(DiffusionModel):
    """The exact eps-predictor for data ~ N(mu + cond, s^2 I) per pixel: a 'trained' model in closed form (a DDPM).

    eps*(x_t) = sqrt(1 - abar) (x_t - sqrt(abar) mean) / (abar s^2 + 1 - abar).
    """

    name = "gaussian"
    kind = DDPM
    conditioned = True

    def __init__(self, schedule: NoiseSchedule, image_shape=(1, 8, 8), mu=0.2, s=0.3, value_range=(0.0, 1.0)):
        self.schedule = schedule
        self.image_shape = image_shape
        self.value_range = value_range
        self.device = torch.device("cpu")
        self.mu, self.s = mu, s

    def predict(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Prediction:
        abar = self.schedule.abar(t).view(-1, 1, 1, 1)
        mean = self.mu + cond.float().reshape(cond.shape[0], -1).sum(1).view(-1, 1, 1, 1)
        eps = (1 - abar).sqrt() * (x_t - abar.sqrt() * mean) / (abar * self.s**2 + 1 - abar)
        return Prediction(eps)

    def encode(self, prompts: list[str]) -> Tensor:
        return torch.tensor([[0.1 * len(p)] for p in prompts])

    def null(self, n: int) -> Tensor:
        return torch.zeros(n, 1)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run far faster on one intra-op thread, above all on a busy shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """`diffusionlab ARGV` in process: (exit status, stdout, stderr)."""
    from diffusionlab.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err
