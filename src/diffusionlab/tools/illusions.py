"""Visual anagrams (A1.8) and hybrid images (A1.9) as tools: a model and two prompts in, a Result out with the
images and the figure that shows each reading (the view applied; the far, low-passed view)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from diffusionlab import edits
from diffusionlab.checks import check_batch
from diffusionlab.errors import DiffusionLabError
from diffusionlab.figures import show_prompt
from diffusionlab.steps import choose_step_rule
from diffusionlab.tools.image import Seed, _generator, _settings
from diffusionlab.tools.inputs import as_model, prompts_of
from diffusionlab.tools.result import Panel, Result


def _two(prompts: Sequence[str], tool: str, roles: str) -> list[str]:
    prompts = [prompts] if isinstance(prompts, str) else list(prompts or [])
    if len(prompts) != 2:
        raise DiffusionLabError(f"{tool} needs exactly two --prompt options ({roles}), got {len(prompts)}")
    return prompts


def anagram(
    model,
    prompts: Sequence[str],
    view: str = "rot180",
    n: int = 4,
    scale: float | None = None,
    seed: Seed = 0,
    sampler: str | None = None,
    variance: str | None = None,
    eta: float | None = None,
) -> Result:
    """n images that read as prompts[0] upright and as prompts[1] through `view` (rot180, flip, ...; see
    diffusionlab.views). images: (n, C, H, W), upright; the figure shows them and their views."""
    from diffusionlab.views import get_view

    two = _two(prompts, "anagram", "upright, viewed")
    rule = choose_step_rule(sampler, variance, eta)
    m = as_model(model)
    check_batch(n, m.image_shape)
    permutation_seed = seed if isinstance(seed, int) else 0
    v = get_view(view, m.image_shape, m.value_range, permutation_seed)
    p1, p2 = prompts_of(m, two)
    res = edits.anagram(m, p1, p2, v, n, scale, _generator(seed), seed=permutation_seed, **rule)
    viewed = v.apply(res)
    rows = [f"{show_prompt(p1)} (upright)", f"{show_prompt(p2)} ({view})"]
    panel = Panel(torch.cat([res, viewed]), n, rows, None, f"anagram, view {view}")
    singles = {f"anagram_{k + 1}": res[k] for k in range(n)}
    singles |= {f"anagram_{k + 1}_{view}": viewed[k] for k in range(n)}
    s = edits.default_scale(m) if scale is None else scale
    settings = _settings("anagram", m, seed, [], prompts=[p1, p2], view=view, n=n, scale=s, **rule)
    return Result(res, [panel], m.value_range, settings, singles)


def hybrid(
    model,
    prompts: Sequence[str],
    n: int = 4,
    kernel: int | None = None,
    sigma: float | None = None,
    scale: float | None = None,
    seed: Seed = 0,
    sampler: str | None = None,
    variance: str | None = None,
    eta: float | None = None,
) -> Result:
    """n images that read as prompts[0] from afar (low frequencies) and prompts[1] up close (high). kernel/sigma:
    the low-pass (default 33/2 at 64 px, scaled: 15/0.875 at 28). images: (n, C, H, W)."""
    from diffusionlab.filters import check_blur, lowpass, scaled_blur

    two = _two(prompts, "hybrid", "low, high")
    rule = choose_step_rule(sampler, variance, eta)
    m = as_model(model)
    check_batch(n, m.image_shape)
    k0, s0 = scaled_blur(m.image_shape[1])
    k, sg = kernel or k0, sigma or s0
    check_blur(k, sg, m.image_shape[1], m.image_shape[2])
    p1, p2 = prompts_of(m, two)
    res = edits.hybrid(m, p1, p2, n, sg, k, scale, _generator(seed), **rule)
    far = lowpass(res, k, sg)
    title = f"hybrid: far {show_prompt(p1)}, near {show_prompt(p2)}; kernel {k}, sigma {sg:g}"
    panel = Panel(torch.cat([res, far]), n, ["hybrid", f"low-pass ({show_prompt(p1)})"], None, title)
    s = edits.default_scale(m) if scale is None else scale
    settings = _settings("hybrid", m, seed, [], prompts=[p1, p2], n=n, kernel=k, sigma=sg, scale=s, **rule)
    return Result(res, [panel], m.value_range, settings, {f"hybrid_{j + 1}": res[j] for j in range(n)})
