"""Noise schedules, the forward process and the strided DDPM step.

Timesteps are 0-indexed as in diffusers: t in [0, T-1] and abar_t = alphas_cumprod[t]. The course's 1-indexed
"t = T..1" is our "t = T-1..0"; abar of the step before 0 is 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from diffusionlab.errors import DiffusionLabError


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete diffusion schedule, defined by its betas (float32, like diffusers)."""

    betas: Tensor
    kind: str = "custom"

    @classmethod
    def linear(cls, num_steps: int = 300, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """The course's Part B schedule: betas evenly spaced from beta_start to beta_end."""
        return cls(torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float32), "linear")

    @classmethod
    def cosine(cls, num_steps: int = 1000, max_beta: float = 0.999) -> NoiseSchedule:
        """ "squaredcos_cap_v2" (Nichol & Dhariwal), the schedule of DeepFloyd IF."""

        def alpha_bar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
        return cls(torch.tensor(betas, dtype=torch.float32), "cosine")

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: Tensor, kind: str = "custom") -> NoiseSchedule:
        ac = alphas_cumprod.detach().to("cpu", torch.float64)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        return cls((1 - ac / prev).float(), kind)

    @classmethod
    def from_config(cls, config: dict) -> NoiseSchedule:
        kind = config.get("type", "linear")
        if kind == "linear":
            return cls.linear(config["num_steps"], config.get("beta_start", 1e-4), config.get("beta_end", 0.02))
        if kind == "cosine":
            return cls.cosine(config["num_steps"])
        raise DiffusionLabError(f"unknown noise schedule type {kind!r} in the model config (linear or cosine)")

    def to_config(self) -> dict:
        if self.kind == "linear":
            return {
                "type": "linear",
                "num_steps": self.num_steps,
                "beta_start": round(float(self.betas[0]), 8),
                "beta_end": round(float(self.betas[-1]), 8),
            }
        return {"type": self.kind, "num_steps": self.num_steps}

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])

    @property
    def alphas(self) -> Tensor:
        return 1.0 - self.betas

    @property
    def alphas_cumprod(self) -> Tensor:
        return torch.cumprod(self.alphas, dim=0)

    def abar(self, t: Tensor | int) -> Tensor:
        """abar_t for integer timesteps; t = -1 (the step after the last) gives 1."""
        ac = torch.cat([self.alphas_cumprod, torch.ones(1)])  # index -1 wraps to the appended 1
        return ac[torch.as_tensor(t, dtype=torch.long)]

    def check_timestep(self, t: int) -> int:
        if not 0 <= int(t) < self.num_steps:
            raise DiffusionLabError(
                f"timestep t={t} is out of range: this model's t goes from 0 to {self.num_steps - 1}"
            )
        return int(t)


def is_single_step(t: float, t_prev: float) -> bool:
    """Whether t -> t_prev is one step of the T (Algorithm B.2's), not a stride over several."""
    return t - t_prev == 1


def strided_timesteps(num_steps: int, stride: int | None = None) -> list[int]:
    """The course's strided schedule: range(990, -1, -30) for T = 1000, range(290, -1, -10) for T = 300.

    The default stride keeps the same shape for any T: about T / 30 per step, starting 10 steps before the end
    when T = 300 and 10 before when T = 1000 too.
    """
    if stride is None:
        stride = 30 if num_steps >= 1000 else max(1, num_steps // 30)
    start = num_steps - (10 if num_steps >= 300 else stride)
    start = min(num_steps - 1, max(0, start))
    return list(range(start, -1, -stride))


def full_timesteps(num_steps: int) -> list[int]:
    """Every step, T-1 down to 0: DDPM sampling as Algorithm B.2."""
    return list(range(num_steps - 1, -1, -1))


def spaced_timesteps(num_steps: int, count: int) -> list[int]:
    """`count` timesteps evenly spaced from T-1 down to 0 (count = T gives every step)."""
    if not 1 <= count <= num_steps:
        raise DiffusionLabError(f"--steps must be between 1 and T = {num_steps}, got {count}")
    if count == 1:
        return [num_steps - 1]
    return sorted({round((num_steps - 1) * (1 - i / (count - 1))) for i in range(count)}, reverse=True)


def strided_spaced_timesteps(num_steps: int, count: int) -> list[int]:
    """`count` timesteps evenly spaced from the course's strided start (290 for T = 300, 990 for T = 1000) down to
    0: the strided schedule's own count gives strided_timesteps itself, so a recorded count remakes it."""
    start = strided_timesteps(num_steps)[0]
    if not 1 <= count <= start + 1:
        raise DiffusionLabError(f"--steps must be between 1 and {start + 1} (the strided schedule from t = {start})")
    return spaced_timesteps(start + 1, count)


def check_timesteps(schedule: NoiseSchedule, timesteps: Sequence[int]) -> list[int]:
    ts = [schedule.check_timestep(int(t)) for t in timesteps]
    if any(a <= b for a, b in zip(ts, ts[1:], strict=False)):
        raise DiffusionLabError(f"timesteps must strictly decrease, got {ts[:6]}{'...' if len(ts) > 6 else ''}")
    return ts


def _per_sample(values: Tensor, like: Tensor) -> Tensor:
    return values.to(like.device, like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def add_noise(x0: Tensor, t: Tensor | int, noise: Tensor, schedule: NoiseSchedule) -> Tensor:
    """Forward process: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps. t is one int or one per sample."""
    t = torch.as_tensor(t, dtype=torch.long).reshape(-1).expand(x0.shape[0])
    abar = _per_sample(schedule.abar(t), x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def predict_x0(x_t: Tensor, t: Tensor | int, eps: Tensor, schedule: NoiseSchedule) -> Tensor:
    """One-step denoising: x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    t = torch.as_tensor(t, dtype=torch.long).reshape(-1).expand(x_t.shape[0])
    abar = _per_sample(schedule.abar(t), x_t)
    return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()


def dynamic_threshold(x0: Tensor, ratio: float = 0.95, max_value: float = 1.5) -> Tensor:
    """Imagen's dynamic thresholding, as IF's scheduler does: clamp to the ratio-quantile of |x0| per sample."""
    flat = x0.float().reshape(x0.shape[0], -1)
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1.0, max=max_value).unsqueeze(1)
    return (flat.clamp(-s, s) / s).reshape(x0.shape).to(x0.dtype)


VARIANCE_MODES = ("auto", "learned-range", "beta", "beta-tilde")


def step_variance(schedule: NoiseSchedule, t: int, t_prev: int, mode: str, var_values: Tensor | None = None) -> Tensor:
    """Log variance of the t -> t_prev step (a scalar tensor, or per pixel for learned-range)."""
    abar_t, abar_prev = schedule.abar(t).double(), schedule.abar(t_prev).double()
    beta = 1 - abar_t / abar_prev
    beta_tilde = ((1 - abar_prev) / (1 - abar_t) * beta).clamp(min=1e-20)
    if (
        mode == "auto"
    ):  # learned when predicted; else Algorithm B.2's beta on single steps, the posterior's when strided
        mode = "learned-range" if var_values is not None else ("beta" if is_single_step(t, t_prev) else "beta-tilde")
    if mode == "beta":
        return beta.log().float()
    if mode == "beta-tilde":
        return beta_tilde.log().float()
    if mode == "learned-range":
        if var_values is None:
            raise DiffusionLabError("variance mode 'learned-range' needs a model that predicts variance (e.g. IF)")
        frac = (var_values.float() + 1) / 2
        return frac * beta.log().float() + (1 - frac) * beta_tilde.log().float()
    raise DiffusionLabError(f"unknown variance mode {mode!r}; choose one of {', '.join(VARIANCE_MODES)}")


def ddpm_step(
    schedule: NoiseSchedule,
    x_t: Tensor,
    t: int,
    t_prev: int,
    x0_hat: Tensor,
    noise: Tensor | None,
    log_variance: Tensor | None,
) -> Tensor:
    """The strided DDPM step t -> t_prev (t_prev < t; -1 means "to the clean image").

    alpha = abar_t / abar_t', beta = 1 - alpha,
    x_t' = sqrt(abar_t') beta / (1 - abar_t) x0_hat + sqrt(alpha) (1 - abar_t') / (1 - abar_t) x_t + sigma z.
    With t_prev = t - 1 this is Algorithm B.2.
    """
    abar_t, abar_prev = schedule.abar(t), schedule.abar(t_prev)
    alpha = abar_t / abar_prev
    beta = 1 - alpha
    mean = (abar_prev.sqrt() * beta / (1 - abar_t)) * x0_hat + (alpha.sqrt() * (1 - abar_prev) / (1 - abar_t)) * x_t
    if noise is None or log_variance is None:
        return mean
    return mean + torch.exp(0.5 * log_variance).to(noise.device, noise.dtype) * noise
