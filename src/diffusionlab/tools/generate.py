"""Sampling as a tool (A1.5, A1.6, B2.3, B2.5): one row per prompt, n images each, all in one batch, for any
model (our DDPMs and flow models, IF; IF's stage II upsamples them with stage2=True)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from diffusionlab.checks import check_batch, check_count
from diffusionlab.errors import DiffusionLabError
from diffusionlab.steps import choose_step_rule
from diffusionlab.tools.image import ran_rule, tool_settings
from diffusionlab.tools.inputs import as_model, cfg_scale, prompt_list
from diffusionlab.tools.result import Panel, Result


def sample(
    model,
    prompts: Any = None,
    n: int = 4,
    steps: int | None = None,
    scale: float | None = None,
    seed: int = 0,
    frames: list[Tensor] | None = None,
    progress: bool = True,
    sampler: str | None = None,
    variance: str | None = None,
    eta: float | None = None,
    strided: bool = False,
    stage2: bool = False,
    stage2_steps: int = 50,
    noise_level: int = 250,
    distributed: Any = None,
) -> Result | None:
    """Samples from pure noise, CFG towards the prompts when given (scale default 5 for ours, 7 for IF; a model
    without prompts takes no scale). prompts: one or a list, text or class indices (3 is "3").
    images: (n * len(prompts), C, H, W), prompt by prompt, as sampled (not clamped; the figure and PNGs clamp to
    the value range). `frames` collects the process for a GIF. steps None: the model kind's default (sampling.
    timesteps_for), or with strided=True Part A's strided schedule (A1.5, A1.6: 290, 280, ..., 0 for T = 300).
    stage2: IF's stage II upsamples the images x4 (stage2_steps, noise_level; its noise from seed + 1).
    distributed: a distributed.DistContext under torchrun: the images split across the ranks, None on the others."""
    from diffusionlab.sampling import generate, timesteps_for

    rule = choose_step_rule(sampler, variance, eta)
    m = as_model(model)
    m.kind.require(m, "sample")  # one line for a model that does not sample (a single-step denoiser)
    s = cfg_scale(m, scale)
    ps = _prompts(m, prompts)
    check_batch(n * max(1, len(ps)), m.image_shape, "-n x --prompt")
    s2 = open_stage2(m, stage2_steps, noise_level) if stage2 else None  # checked before stage I runs
    ts = timesteps_for(m, steps, edit=strided)
    every, unguided = max(1, len(ts) // 30), 1.0  # a model without prompts samples unguided
    if distributed is not None and distributed.enabled:
        x = _sharded(m, ps, n, unguided if s is None else s, seed, distributed, frames, step_rule=rule, timesteps=ts,
                     flow_steps=steps, frame_every=every)  # fmt: skip
        if x is None:  # not rank 0
            return None
    else:
        x = generate(m, ps or None, n, unguided if s is None else s, seed, ts, steps, frames, every, progress, rule)
    if s2 is not None:
        x = _upscale(s2, m, x, ps, n, stage2_steps, noise_level, seed)
    guided = any(ps)
    title = f"{m.name}  seed={seed}" + (f"  cfg={s}" if ps else "")
    panel = Panel(x, n, ps or None, None, title)
    how = dict(steps=len(ts), strided=strided, **ran_rule(m, rule))
    how |= dict(stage2=True, stage2_steps=stage2_steps, noise_level=noise_level) if stage2 else {}
    settings = tool_settings("sample", m, seed, [], prompts=ps, n=n, scale=s if guided else None, **how)
    return Result(x, [panel], m.value_range, settings, {f"sample_{i + 1}": img for i, img in enumerate(x)})


def _prompts(m, prompts: Any) -> list[str]:
    """The prompts as text; a model without prompts refuses any."""
    ps = prompt_list(prompts)
    if not m.conditioned:
        if any(ps):
            raise DiffusionLabError(f"{m.name} is not class-conditioned; drop --prompt")
        return []
    return ps


def _sharded(m, ps: list[str], n: int, scale: float, seed: int, ctx, frames, **kwargs) -> Tensor | None:
    """Under torchrun: each rank samples its share; rank 0 gets every image (None elsewhere)."""
    from diffusionlab.distributed import destroy, sharded_generate

    x = sharded_generate(m, ps or None, n, scale, seed, ctx, frames, **kwargs)
    destroy(ctx)
    return x if ctx.is_main else None


def _upscale(s2, m, x: Tensor, ps: list[str], n: int, stage2_steps: int, noise_level: int, seed: int) -> Tensor:
    """stage2: stage I's images x4 with IF stage II, its noise from seed + 1."""
    from diffusionlab.edits import unconditional_prompt
    from diffusionlab.model_protocol import generator_for
    from diffusionlab.upscale import upscale

    cond = s2.encode([p for p in ps for _ in range(n)] or [unconditional_prompt(m)] * len(x))
    gen = generator_for(seed + 1)
    return upscale(s2, x, cond, s2.null(1), num_steps=stage2_steps, noise_level=noise_level, generator=gen)


def open_stage2(m, steps: int, noise_level: int):
    """IF stage II, loaded and its options checked before stage I spends its time."""
    if not hasattr(m, "stage2"):
        raise DiffusionLabError("--stage2 upsampling is for DeepFloyd IF (--model deepfloyd)")
    check_count(steps, "--stage2-steps")
    s2 = m.stage2()
    top = s2.noising_schedule.num_steps - 1
    if not 0 <= noise_level <= top:
        raise DiffusionLabError(f"--noise-level must be between 0 and {top}, got {noise_level}")
    s2.timesteps(steps)  # a step count its scheduler cannot space fails here
    return s2
