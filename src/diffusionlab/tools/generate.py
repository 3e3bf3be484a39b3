"""Sampling as a tool (A1.5, A1.6, B2.3, B2.5): one row per prompt, n images each, all in one batch, for any
model (our DDPMs and flow models, IF)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from diffusionlab.checks import check_batch
from diffusionlab.errors import DiffusionLabError
from diffusionlab.steps import choose_step_rule
from diffusionlab.tools.image import tool_settings
from diffusionlab.tools.inputs import as_model
from diffusionlab.tools.result import Panel, Result


def sample(
    model,
    prompts: str | Sequence[str] | None = None,
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
) -> Result:
    """Samples from pure noise, CFG when prompts are given (scale default 5 for ours, 7 for IF).
    images: (n * len(prompts), C, H, W), prompt by prompt. `frames` collects the process for a GIF.
    steps None: every step for our DDPMs (Algorithm B.2), or with strided=True Part A's strided schedule (A1.5,
    A1.6: 290, 280, ..., 0 for T = 300; IF takes it either way)."""
    from diffusionlab.edits import default_scale
    from diffusionlab.sampling import generate, timesteps_for

    rule = choose_step_rule(sampler, variance, eta)
    m = as_model(model)
    ps = [prompts] if isinstance(prompts, str) else list(prompts or [])
    if ps and getattr(m, "num_classes", 1) == 0:
        raise DiffusionLabError(f"{getattr(m, 'name', 'this model')} is not class-conditioned; drop --prompt")
    check_batch(n * max(1, len(ps)), m.image_shape, "-n x --prompt")
    s = default_scale(m) if scale is None else scale
    ts = timesteps_for(m, steps, edit=strided)
    every = max(1, len(ts) // 30)
    x = generate(m, ps or None, n, s, seed, ts, steps, frames, every, progress, rule)
    title = f"{getattr(m, 'name', 'model')}  seed={seed}" + (f"  cfg={s}" if ps else "")
    panel = Panel(x, n, ps or None, None, title)
    settings = tool_settings("sample", m, seed, [], prompts=ps, n=n, steps=steps, scale=s, **rule)
    return Result(x, [panel], m.value_range, settings, {f"sample_{i + 1}": img for i, img in enumerate(x)})
