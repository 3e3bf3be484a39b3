"""Part A's image tools on a user's images: the forward process, denoising (blur, one step, iterative), SDEdit and
image-to-image, inpainting. Each takes a model and the request, runs the algorithms in diffusionlab.edits and
returns a Result (images, labelled figure, settings) that the CLI saves, the report embeds and a notebook shows.

`seed` is an int, or a torch.Generator to continue one (the CLI's `denoise` shares one between its methods)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from diffusionlab import edits
from diffusionlab.checks import check_batch
from diffusionlab.errors import DiffusionLabError
from diffusionlab.figures.grid import show_prompt
from diffusionlab.model_protocol import generator_for
from diffusionlab.sampling import check_i_start
from diffusionlab.steps import choose_step_rule
from diffusionlab.tools.inputs import (
    ImageInput,
    as_model,
    cfg_scale,
    default_noise_levels,
    load_inputs,
    model_name,
    prompt_of,
    safe_name,
)
from diffusionlab.tools.result import Panel, Result

Images = ImageInput | Sequence[ImageInput]
Seed = int | torch.Generator


def seed_generator(seed: Seed) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else generator_for(seed)


def tool_settings(tool: str, model, seed: Seed, sources: list[str], **kw: Any) -> dict[str, Any]:
    """A Result's settings, shared by every tool: the tool, the model (the name that loads it) and its precision,
    the seed, the test-image source, the rest (None values left out)."""
    s = {"tool": tool, "model": model_name(model), "precision": model.precision}
    s.update({k: v for k, v in kw.items() if v is not None})
    if not isinstance(seed, torch.Generator):
        s["seed"] = int(seed)
    if sources:
        s["test images"] = "; ".join(sources)
    return s


def ran_rule(model, rule: dict[str, Any]) -> dict[str, Any]:
    """The step rule that ran (the model's defaults under the caller's choices, sampling.sampler_defaults), as the
    tools take it back: the sampler, and variance and eta where that sampler takes them."""
    from diffusionlab.sampling import sampler_defaults
    from diffusionlab.steps import samplers_taking

    full = sampler_defaults(model, rule)
    taken = [k for k in ("variance", "eta") if full["sampler"] in samplers_taking(k) and full.get(k) is not None]
    return {"sampler": full["sampler"], **{k: full[k] for k in taken}}


def edit_timesteps(model, steps: int | None) -> list:
    """The timesteps of an edit (iterative denoising, SDEdit, inpainting): `steps` of them, else the kind's."""
    from diffusionlab.sampling import timesteps_for

    return timesteps_for(model, steps, edit=True)


def tool_model(model, tool: str):
    """The model, loaded; a one-line error unless its kind runs `tool` (a flow model has no DDPM noise levels, a
    single-step denoiser no times at all: the error says what it runs)."""
    m = as_model(model)
    m.kind.require(m, tool)
    return m


def _noise_levels(model, t: int | Sequence[int] | None) -> list[int]:
    ts = [int(t)] if isinstance(t, int) else [int(v) for v in t] if t else default_noise_levels(model)
    for tt in ts:
        model.schedule.check_timestep(tt)
    return ts


def forward(
    model,
    images: Images,
    t: int | Sequence[int] | None = None,
    kernel: int | None = None,
    sigma: float | None = None,
    seed: Seed = 0,
    data_dir=None,
    invert: bool = False,
) -> Result:
    """The forward process (A1.1) at each t, and classical Gaussian-blur denoising of it (A1.2).

    images: (len(t), k, C, H, W), the noisy images; the figure shows original | each t, noisy and blurred."""
    m = tool_model(model, "forward")
    ts = _noise_levels(m, t)
    x, labels, sources = load_inputs(m, images, data_dir, invert)
    noisy = edits.forward(m, x, ts, seed_generator(seed))
    blurred = torch.stack([edits.blur(nx, kernel, sigma) for nx in noisy])
    panels, singles = [], {}
    cols = ["original"] + [f"t={tt}" for tt in ts]
    for j, label in enumerate(labels):
        row = torch.stack([torch.cat([x[j : j + 1], noisy[:, j]]), torch.cat([x[j : j + 1], blurred[:, j]])])
        panels.append(Panel(row.flatten(0, 1), len(ts) + 1, ["noisy", "blurred"], cols, label))
        for i, tt in enumerate(ts):
            singles[f"{safe_name(label)}_noisy_t{tt}"] = noisy[i, j]
            singles[f"{safe_name(label)}_blur_t{tt}"] = blurred[i, j]
    settings = tool_settings("forward", m, seed, sources, t=ts, kernel=kernel, sigma=sigma)
    return Result(noisy, panels, m.value_range, settings, singles, {"noisy": noisy, "blurred": blurred})


def one_step_denoise(
    model,
    images: Images,
    t: int | Sequence[int] | None = None,
    prompt: str | None = None,
    scale: float = 1.0,
    methods: Sequence[str] = ("blur", "one-step"),
    kernel: int | None = None,
    sigma: float | None = None,
    seed: Seed = 0,
    data_dir=None,
    invert: bool = False,
) -> Result:
    """One-step denoising (A1.3) of the image noised to each t, beside the blur (A1.2): x0 = (x_t - sqrt(1 - abar)
    eps) / sqrt(abar). images: (len(t), k, C, H, W), the last method's estimates; parts: "noisy" and each method's."""
    m = tool_model(model, "one_step_denoise")
    ts = _noise_levels(m, t)
    p = prompt_of(m, prompt)
    x, labels, sources = load_inputs(m, images, data_dir, invert)
    noisy = edits.forward(m, x, ts, seed_generator(seed))
    est = {
        "blur": lambda xt, tt: edits.blur(xt, kernel, sigma),
        "one-step": lambda xt, tt: edits.one_step_denoise(m, xt, tt, p, scale),
    }
    out = {name: torch.stack([est[name](noisy[i], tt) for i, tt in enumerate(ts)]) for name in methods}
    panels, singles = [], {}
    cols = ["original", "noisy", *methods]
    for j, label in enumerate(labels):
        cells = []
        for i, tt in enumerate(ts):
            row = [x[j], noisy[i, j]] + [out[name][i, j] for name in methods]
            cells += row
            for name, img in zip(cols[1:], row[1:], strict=True):
                singles[f"{safe_name(label)}_{name}_t{tt}"] = img
        panels.append(Panel(torch.stack(cells), len(cols), [f"t={tt}" for tt in ts], cols, label))
    settings = tool_settings("one_step_denoise", m, seed, sources, t=ts, prompt=p, scale=scale, methods=list(methods))
    return Result(out[methods[-1]], panels, m.value_range, settings, singles, {"noisy": noisy, **out})


ITERATIVE_WHY = (
    " At 28 px i_start = 15 (t = 140), not the course's 10: from t = 190 the iterative result is the test digit for "
    "34 % of test digits, from t = 140 for 80 % (one step: 52 %, the blur: 0 %)."
)


def default_i_start(model) -> int:
    """Where iterative denoising starts, the model kind's: the course's i_start = 10 for IF (t = 690 of 1000); 15
    for our 28-px models, measured by benchmarks/parta_settings.py (see ITERATIVE_WHY, model_kinds)."""
    return model.kind.iterative_i_start


def iterative_denoise(
    model,
    images: Images,
    i_start: int | None = None,
    every: int = 5,
    prompt: str | None = None,
    scale: float = 1.0,
    kernel: int | None = None,
    sigma: float | None = None,
    seed: Seed = 0,
    data_dir=None,
    invert: bool = False,
    sampler: str | None = None,
    variance: str | None = None,
    eta: float | None = None,
    progress: bool = True,
    steps: int | None = None,
) -> Result:
    """Iterative strided denoising (A1.4) of the image noised to the strided timestep i_start, every `every`-th
    step shown, then the one-step estimate and the blur from the same noisy image. images: (k, C, H, W), clean.
    steps: how many strided timesteps span T (None: the course's stride, sampling.timesteps_for)."""
    if every < 1:
        raise DiffusionLabError("--every must be at least 1")
    rule = choose_step_rule(sampler, variance, eta)
    m = tool_model(model, "iterative_denoise")
    strided = edit_timesteps(m, steps)
    i_start = default_i_start(m) if i_start is None else i_start
    check_i_start(strided, i_start)
    p = prompt_of(m, prompt)
    x, labels, sources = load_inputs(m, images, data_dir, invert)
    g = seed_generator(seed)
    t0 = strided[i_start]
    x_t = edits.forward(m, x, [t0], g)[0]
    frames: list[tuple[int, Tensor]] = [(t0, x_t)]

    def keep(state: dict) -> None:
        if (state["i"] - i_start + 1) % every == 0 and state["t_prev"] >= 0:
            frames.append((state["t_prev"], state["x"]))

    clean = edits.iterative_denoise(m, x_t, i_start, p, scale, strided, g, keep, progress=progress, **rule)
    one_step = edits.one_step_denoise(m, x_t, t0, p, scale)
    blurred = edits.blur(x_t, kernel, sigma)
    cols = [f"t={tt}" for tt, _ in frames] + ["iterative", "one-step", "blur", "original"]
    panels, singles = [], {}
    for j, label in enumerate(labels):
        row = [f[j] for _, f in frames] + [clean[j], one_step[j], blurred[j], x[j]]
        panels.append(Panel(torch.stack(row), len(row), None, cols, f"{label}: iterative from t={t0}"))
        singles[f"{safe_name(label)}_iterative_from{t0}"] = clean[j]
        for tt, f in frames:
            singles[f"{safe_name(label)}_iterative_frame_t{tt}"] = f[j]
    settings = tool_settings(
        "iterative_denoise", m, seed, sources, i_start=i_start, t_start=t0, prompt=p, scale=scale,
        steps=len(strided), **ran_rule(m, rule),
    )  # fmt: skip
    return Result(clean, panels, m.value_range, settings, singles)


def sdedit(
    model,
    images: Images,
    prompt: str | None = None,
    i_starts: Sequence[int] | None = None,
    n: int = 1,
    scale: float | None = None,
    seed: Seed = 0,
    data_dir=None,
    invert: bool = False,
    sampler: str | None = None,
    variance: str | None = None,
    eta: float | None = None,
    progress: bool = True,
    tool: str = "sdedit",
    steps: int | None = None,
) -> Result:
    """SDEdit (A1.7) and, with a real prompt, class/text-conditional image-to-image (A1.7.3, `translate`): each
    image noised to the strided timestep of each i_start and denoised with CFG, n results each, all in one batch.
    images: (len(i_starts), k * n, C, H, W). On a flow model the i_starts index its Euler steps' flow times.
    steps: how many strided timesteps span T (None: the course's stride, sampling.timesteps_for).
    i_starts None: the course's (edits.SDEDIT_I_STARTS) that index one of the model's strided timesteps."""
    rule = choose_step_rule(sampler, variance, eta)
    m = tool_model(model, tool)
    cfg = cfg_scale(m, scale)
    strided = edit_timesteps(m, steps)
    default = [i for i in edits.SDEDIT_I_STARTS if i < len(strided)]
    starts = [int(i) for i in i_starts] if i_starts is not None else default
    for i in starts:
        check_i_start(strided, i)
    p = prompt_of(m, prompt)
    x, labels, sources = load_inputs(m, images, data_dir, invert)
    check_batch(len(x) * n * len(starts), m.image_shape, "images x -n x --i-start")
    xs = x.repeat_interleave(n, 0)
    res = edits.sdedit(m, xs, p, starts, scale, seed_generator(seed), strided, progress=progress, **rule)
    cells, rows, singles = [], [], {}
    for r in range(xs.shape[0]):
        label = labels[r // n] + (f" #{r % n + 1}" if n > 1 else "")
        rows.append(label)
        cells += [res[s, r] for s in range(len(starts))] + [xs[r]]
        for s, i in enumerate(starts):
            singles[f"{safe_name(label)}_istart{i}"] = res[s, r]
    cols = [f"i={i} (t={strided[i]:g})" for i in starts] + ["original"]
    title = f"SDEdit, prompt {show_prompt(p)}" + (f", cfg {cfg:g}" if cfg is not None else "")
    panel = Panel(torch.stack(cells), len(cols), rows, cols, title)
    settings = tool_settings(
        tool, m, seed, sources, prompt=p, i_starts=starts, n=n, scale=cfg, steps=len(strided), **ran_rule(m, rule)
    )
    return Result(res, [panel], m.value_range, settings, singles, {"inputs": x})


def translate(model, images: Images, prompt: str, i_starts: Sequence[int] | None = None, **kw: Any) -> Result:
    """Class/text-conditional image-to-image (A1.7.3): SDEdit towards a real prompt ("a rocket ship", "7");
    `sdedit`'s other options."""
    if not prompt:
        raise DiffusionLabError("translate needs a prompt (the class or text to move the image towards)")
    return sdedit(model, images, prompt, i_starts, tool="translate", **kw)


def inpaint(
    model,
    images: Images,
    mask: str | Tensor = "default",
    prompt: str | None = None,
    n: int = 1,
    scale: float | None = None,
    seed: Seed = 0,
    data_dir=None,
    invert: bool = False,
    sampler: str | None = None,
    variance: str | None = None,
    eta: float | None = None,
    progress: bool = True,
    steps: int | None = None,
) -> Result:
    """Inpainting (A1.7.2): new content where the mask is 1, the original (exactly) elsewhere; n results per image.
    mask: a (1, 1, H, W) tensor (or (k, 1, H, W), one per image), a mask image file, 'default' (the course's,
    scaled) or rect:r0:r1:c0:c1. images: (k * n, C, H, W). steps: as sdedit's."""
    from diffusionlab.images import load_mask

    rule = choose_step_rule(sampler, variance, eta)
    m = tool_model(model, "inpaint")
    cfg = cfg_scale(m, scale)
    mk = (mask if isinstance(mask, Tensor) else load_mask(mask, m.image_shape)).to(m.device)
    p = prompt_of(m, prompt)
    x, labels, sources = load_inputs(m, images, data_dir, invert)
    check_batch(len(x) * n, m.image_shape, "images x -n")
    if mk.shape[0] not in (1, len(x)):
        raise DiffusionLabError(f"{mk.shape[0]} masks for {len(x)} images: give one mask, or one per image")
    mk = mk.expand(len(x), *mk.shape[1:])
    xs = x.repeat_interleave(n, 0)
    ts = edit_timesteps(m, steps)
    res = edits.inpaint(
        m, xs, mk.repeat_interleave(n, 0), p, scale, seed_generator(seed), timesteps=ts, progress=progress, **rule
    )
    lo, hi = m.value_range
    cells, singles = [], {}
    for j, label in enumerate(labels):
        mask_img = (lo + (hi - lo) * mk[j]).expand(m.image_shape)
        kept = x[j] * (1 - mk[j]) + lo * mk[j]
        cells += [x[j], mask_img, kept] + [res[j * n + k] for k in range(n)]
        for k in range(n):
            singles[f"{safe_name(label)}_inpaint_{k + 1}"] = res[j * n + k]
    cols = ["original", "mask", "kept"] + [f"result {k + 1}" for k in range(n)]
    panel = Panel(torch.stack(cells), len(cols), labels, cols, f"inpainting, prompt {show_prompt(p)}")
    mask_name = mask if isinstance(mask, str) else "tensor"
    settings = tool_settings(
        "inpaint", m, seed, sources, mask=mask_name, prompt=p, n=n, scale=cfg, steps=len(ts), **ran_rule(m, rule)
    )
    return Result(res, [panel], m.value_range, settings, singles, {"inputs": x, "masks": mk})
