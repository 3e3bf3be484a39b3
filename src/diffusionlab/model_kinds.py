"""Model kinds: what a model's output means, and every default that follows from it, declared in one object per kind.

A model says which kind it is (`model.kind`, declared by diffusionlab.model_protocol); the algorithms and front-ends
ask the kind instead of testing the model: its times (timesteps, their default count, the loop's end), its forward
process (`noised`), the clean estimate from its output, its step rule's defaults, its CFG scale and which tools it
runs (`require`: the others refuse in one line). The four kinds:

- DDPM: noise prediction (our class, time and unconditional DDPMs): integer t in 0..T-1, falling to -1.
- FLOW: velocity (our flow-matching models): flow time t in [0, 1), 0 = noise, rising to 1 = data.
- IF: noise prediction with learned-range variance (DeepFloyd IF): a DDPM with IF's (the course's) defaults.
- DENOISER: a single-step denoiser (Part B's mnist-denoiser): one pass from a noisy image, no times at all.

A base-layer module: it knows the schedules, never a model class (value range, channels and size are the model's).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from diffusionlab.checks import check_count
from diffusionlab.errors import DiffusionLabError
from diffusionlab.schedule import (
    add_noise,
    check_timesteps,
    predict_x0,
    spaced_timesteps,
    strided_spaced_timesteps,
    strided_timesteps,
)

# every tool a kind may run, with what it needs (the refusals say it)
TOOLS = {
    "forward": "a DDPM's noise levels",
    "one_step_denoise": "a DDPM's noise levels",
    "iterative_denoise": "a DDPM's noise levels",
    "sample": "sampling from pure noise",
    "sdedit": "sampling from a noised image",
    "translate": "sampling from a noised image",
    "inpaint": "sampling from pure noise",
    "anagram": "sampling from pure noise",
    "hybrid": "sampling from pure noise",
    "evaluate": "a model of ours with scores",
    "denoise_once": "a single-step denoiser (model.denoise_once)",
}
SAMPLING_TOOLS = ("sample", "sdedit", "translate", "inpaint", "anagram", "hybrid")
NOISE_LEVEL_TOOLS = ("forward", "one_step_denoise", "iterative_denoise")

# our DDPMs' default step rule, "auto": Algorithm B.2 (ddpm, beta) on single steps (all T steps), DDIM with eta 0
# on strided ones (measured in docs/sampling.md, 20-epoch model, N = 1000, 30 steps: FD 2.65 against 3.40 for ddpm
# beta-tilde and 5.56 for beta, which leaves grain; all 100 % accurate)
OUR_SAMPLER = {"sampler": "auto", "variance": "auto"}
# IF's, as its own scheduler: DDPM steps with the learned variance and dynamic thresholding (0.95, 1.5)
IF_SAMPLER = {"sampler": "ddpm", "variance": "auto", "threshold": (0.95, 1.5)}
# a flow model's Euler steps for the Part A edits: as many as the course's strided DDPM schedule (30)
FLOW_EDIT_STEPS = 30


class ModelKind:
    """What every kind declares. Methods take the model for what is the model's own (its schedule, prompts)."""

    name = "kind"
    describe = "a model"  # "<model name> is <describe>"
    output = "noise"  # what Prediction.output holds
    tools: tuple[str, ...] = ()
    end_time: float = -1  # the time after the loop's last step: the clean image
    sampler: dict[str, Any] = {}  # the step rule's defaults (sampling.denoise's keywords)
    only_sampler: str | None = None  # the one step rule this kind takes, if it takes one only
    rule_label: str | None = None  # how evaluate reports its step rule, where not by the step-rule table
    cfg_scale = 5.0  # the CFG scale where the model has no measured one
    measured_defaults = True  # our MNIST-measured defaults (illusions, i_start) apply
    # iterative denoising's start in the strided schedule, measured at 28 px: from the course's i_start = 10 (t = 190
    # of T = 300) the shipped MNIST model recovers 34 % of 50 test digits (one step 0 %), from 15 (t = 140) 80 %
    # (one step 52 %, blur 0 %), from 20 (t = 90) 98 % (one step 92 %): 15 is where the figure shows what iterating
    # buys (benchmarks/parta_settings.py)
    iterative_i_start = 15
    unconditional_prompt = ""  # the prompt for "no particular content"

    def __repr__(self) -> str:
        return f"<model kind {self.name}>"

    def supports(self, tool: str) -> bool:
        return tool in self.tools

    def require(self, model: Any, tool: str) -> None:
        """A one-line error unless this kind runs `tool`, saying what the model runs instead."""
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; model kinds know {', '.join(TOOLS)}")
        if not self.supports(tool):
            runs = ", ".join(self.tools) or "no tool"
            raise DiffusionLabError(f"{tool} needs {TOOLS[tool]}; {model.name} is {self.describe}: it runs {runs}")

    def guidance_scale(self, model: Any) -> float:
        """The CFG scale: the model's measured one (default_guidance_scale) where it has one, else the kind's."""
        own = model.default_guidance_scale
        return self.cfg_scale if own is None else float(own)

    def sampler_defaults(self, model: Any, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The step rule: the kind's defaults, the model's own settings (IF: its scheduler's) over them, then a
        caller's `overrides`."""
        return {**self.sampler, **model.sampler_defaults, **(overrides or {})}

    # -- times: the kinds that sample override these -----------------------------------------------------------
    def default_steps(self, model: Any) -> int | None:
        """The sampling step count when none is given (None: every step of the schedule)."""
        raise self._no_times(model)

    def timesteps(self, model: Any, steps: int | None = None, edit: bool = False) -> list:
        raise self._no_times(model)

    def check_times(self, model: Any, times: list) -> list:
        raise self._no_times(model)

    def network_time(self, model: Any, t: Tensor) -> Tensor:
        """The time input of the network for the loop's times t (a tensor, one per image)."""
        raise self._no_times(model)

    def noised(self, model: Any, x0: Tensor, t: float, noise: Tensor) -> Tensor:
        raise self._no_times(model)

    def clean_estimate(self, model: Any, x: Tensor, t: float, out: Tensor) -> Tensor:
        raise self._no_times(model)

    def is_clean(self, t: float) -> bool:
        """Whether t, a time the loop hands to after_step, is its end (the clean image)."""
        return t == self.end_time

    def view_levels(self, model: Any, t: float) -> tuple[float, float]:
        """How views move a step's input and output (views.View.apply_noisy / inverse_noisy)."""
        raise self._no_times(model)

    def _no_times(self, model: Any) -> DiffusionLabError:
        return DiffusionLabError(
            f"{model.name} is {self.describe}: it has no diffusion times; it runs {', '.join(self.tools)}"
        )


class NoisePrediction(ModelKind):
    """A DDPM predicting the noise eps: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps at integer t in 0..T-1."""

    name = "ddpm"
    describe = "a DDPM"
    output = "noise"
    tools = (*NOISE_LEVEL_TOOLS, *SAMPLING_TOOLS, "evaluate")
    sampler = {**OUR_SAMPLER, "threshold": None}

    def default_steps(self, model: Any) -> int | None:
        """The strided schedule's count (30 at T = 300) for every tool. Measured on the shipped model, N = 1000
        (docs/sampling.md): 30 DDIM steps give FD 2.65 against 3.22 for all 300 steps of Algorithm B.2, in a
        third of the time; the course's B.2 is `steps=T` with the ddpm rule."""
        return len(strided_timesteps(model.schedule.num_steps))

    def timesteps(self, model: Any, steps: int | None = None, edit: bool = False) -> list[int]:
        """steps None: default_steps of them, spaced as a count is; a count: evenly spaced from T-1 down to 0 for
        sampling, or for edits from the strided start down to 0 (so the strided count, 30 at T = 300, gives the
        course's Part A schedule 290, 280, ..., 0 itself)."""
        T = model.schedule.num_steps
        if steps is None:
            steps = self.default_steps(model)
        check_count(steps, "--steps")
        return strided_spaced_timesteps(T, steps) if edit else spaced_timesteps(T, steps)

    def check_times(self, model: Any, times: list) -> list[int]:
        return check_timesteps(model.schedule, times)

    def network_time(self, model: Any, t: Tensor) -> Tensor:
        """(t + 1) / T: the course's t / T with its 1-indexed t."""
        return (t.float() + 1) / model.schedule.num_steps

    def noised(self, model: Any, x0: Tensor, t: float, noise: Tensor) -> Tensor:
        """The forward process x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (t = -1: x0 itself)."""
        return add_noise(x0, int(t), noise, model.schedule)

    def clean_estimate(self, model: Any, x: Tensor, t: float, out: Tensor) -> Tensor:
        """x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)."""
        return predict_x0(x, int(t), out, model.schedule)

    def is_clean(self, t: float) -> bool:
        return t < 0

    def view_levels(self, model: Any, t: float) -> tuple[float, float]:
        """x_t is at abar_t and eps is centred noise (0)."""
        return float(model.schedule.abar(t)), 0.0


class LearnedRangeVariance(NoisePrediction):
    """DeepFloyd IF: noise prediction plus learned-range variance values (3 + 3 channels), images in [-1, 1]. It
    takes the course's IF defaults: DDPM steps with the learned variance and dynamic thresholding (or its own
    scheduler's settings, model.sampler_defaults), CFG 7, the strided timesteps or the scheduler's own spacing."""

    name = "if"
    describe = "DeepFloyd IF (noise and learned-range variance)"
    tools = (*NOISE_LEVEL_TOOLS, *SAMPLING_TOOLS)
    sampler = IF_SAMPLER
    cfg_scale = 7.0
    measured_defaults = False
    iterative_i_start = 10  # the course's (t = 690 of 1000)
    unconditional_prompt = "a high quality photo"  # the course's prompt for "unconditional" generation

    def default_steps(self, model: Any) -> int | None:
        """The course's strided schedule (30 steps at T = 1000)."""
        return len(strided_timesteps(model.schedule.num_steps))

    def timesteps(self, model: Any, steps: int | None = None, edit: bool = False) -> list[int]:
        """steps None: the course's strided schedule (990, 960, ..., 0); a count: IF's scheduler's own spacing."""
        if steps is None:
            return strided_timesteps(model.schedule.num_steps)
        check_count(steps, "--steps")
        return list(model.timesteps(steps))


class FlowVelocity(ModelKind):
    """A flow-matching model predicting the velocity u = x - noise along x_t = (1 - t) noise + t x, t in [0, 1]."""

    name = "flow"
    describe = "a flow model"
    output = "velocity"
    tools = (*SAMPLING_TOOLS, "evaluate")
    end_time = 1.0
    sampler = {"sampler": "euler"}
    only_sampler = "euler"
    rule_label = "flow-euler"

    def default_steps(self, model: Any) -> int:
        """Euler steps for sampling: the course's 300 for the class model, 50 for the time model."""
        return 300 if model.conditioned else 50

    def timesteps(self, model: Any, steps: int | None = None, edit: bool = False) -> list[float]:
        """The flow times of `steps` Euler steps (else FLOW_EDIT_STEPS for edits, default_steps for sampling)."""
        n = steps if steps is not None else (FLOW_EDIT_STEPS if edit else self.default_steps(model))
        check_count(n, "--steps")
        return flow_timesteps(n)

    def check_times(self, model: Any, times: list) -> list[float]:
        """Flow times as floats, checked: rising from 0 or more, all below 1 (where the loop ends)."""
        ts = [float(t) for t in times]
        if not ts or ts[0] < 0 or not all(a < b for a, b in zip(ts, ts[1:] + [1.0], strict=True)):
            raise DiffusionLabError(f"flow times must rise from 0 towards 1 (below 1), got {ts[:3]}...")
        return ts

    def network_time(self, model: Any, t: Tensor) -> Tensor:
        return t

    def noised(self, model: Any, x0: Tensor, t: float, noise: Tensor) -> Tensor:
        """The path (1 - t) noise + t x0 (t = 1: x0 itself)."""
        return (1 - t) * noise + t * x0

    def clean_estimate(self, model: Any, x: Tensor, t: float, out: Tensor) -> Tensor:
        """x + (1 - t) u: one Euler step to t = 1."""
        return x + (1 - t) * out

    def is_clean(self, t: float) -> bool:
        return t >= 1

    def view_levels(self, model: Any, t: float) -> tuple[float, float]:
        """x_t = (1 - t) noise + t x is at t^2 and the velocity x - noise moves like an image (1)."""
        return float(t) ** 2, 1.0


class SingleStepDenoiser(ModelKind):
    """Part B's denoiser: the clean image from a noisy one in one pass (model.denoise_once); no times, no sampling."""

    name = "denoiser"
    describe = "a single-step denoiser"
    output = "clean image"
    tools = ("denoise_once", "evaluate")


def flow_timesteps(n: int) -> list[float]:
    """A flow model's Euler grid of n steps: the flow time at the start of each step, 0, 1/n, ..., (n - 1)/n."""
    return [i / n for i in range(n)]


DDPM = NoisePrediction()
FLOW = FlowVelocity()
IF = LearnedRangeVariance()
DENOISER = SingleStepDenoiser()
KINDS = {k.name: k for k in (DDPM, FLOW, IF, DENOISER)}
