"""Part A sections of the report (A0, A1.1 ... A1.9): each calls its tool (diffusionlab.tools, as the CLI and the
web UI do) and shows the tool's own figure (Result.figure); the inputs (test and hand-drawn images) and prompts
are part_a_inputs'."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from diffusionlab import tools
from diffusionlab.errors import DiffusionLabError
from diffusionlab.figures.grid import show_prompt, stack_vertically
from diffusionlab.filters import FAR_FACTOR
from diffusionlab.report.context import Cell, Context, Figure, SectionOut
from diffusionlab.report.part_a_inputs import hand_drawn, is_ours, prompts_for, test_images


# -- Part A ----------------------------------------------------------------------------------------------------------
def _shown(ctx: Context, out: SectionOut, section: str, name: str, r: Any, caption: str = "") -> None:
    """The tool's own figure (Result.figure, as the CLI and the web UI show it; its settings in the PNG's text),
    saved and listed with its caption."""
    path = ctx.fig(section, name)
    r.save(path)
    out.figures.append(Figure(ctx.rel(path), caption))


def _rows(labels: list[str]) -> str:
    """Which input each of the tool's rows or panels is (a tool names the images of a tensor image 0, image 1, ...)."""
    return "; ".join(f"image {i}: {label}" for i, label in enumerate(labels))


def sec_a0(ctx: Context, out: SectionOut) -> None:
    from diffusionlab.figures.grid import save_grid
    from diffusionlab.sampling import timesteps_for

    m = ctx.part_a_model()
    prompts = prompts_for(m)["a0"]
    counts = ctx.budget.a0_counts if m.kind.measured_defaults else ctx.budget.if_a0_counts  # ours, else IF's
    n = ctx.budget.a0_per_prompt
    last, scale = None, None
    for count in counts:
        ts = timesteps_for(m, count)  # for the caption: the tool takes the same
        r = tools.sample(m, prompts if any(prompts) else None, n, count, seed=ctx.seed, progress=False)
        last, scale = r.images, r.settings["scale"]
        caption = f"{len(ts)} inference steps ({ts[0]} .. {ts[-1]}), CFG {scale:g}, seed {ctx.seed}"
        _shown(ctx, out, "A0", f"steps{count}", r, caption)
    out.caption = (
        f"Samples of {len(prompts)} prompts (a row each), {n} each, at {len(counts)} step counts; the same seed, so "
        "the same starting noise: more steps, more detail."
    )
    out.settings = {"model": m.name, "prompts": prompts, "steps": list(counts)}
    out.settings["cfg"] = scale
    if hasattr(m, "stage2") and last is not None:  # DeepFloyd IF: stage II upsampling to 256 px
        try:
            from diffusionlab.upscale import upscale

            s2 = m.stage2()
            cond = s2.encode([p for p in prompts for _ in range(n)])
            big = upscale(s2, last, cond, generator=ctx.generator(), progress=False)
            path = ctx.fig("A0", "stage2")
            save_grid(big, path, n, s2.value_range, row_labels=prompts, title="stage II, 256 px")
            out.figures.append(Figure(ctx.rel(path), "stage II upsampling (x4) of the last row, CFG 4, 50 steps"))
        except DiffusionLabError as e:
            out.notes.append(f"stage II upsampling skipped: {e}")


def _noised_image(ctx: Context, out: SectionOut) -> tuple[Any, Tensor, list[str], list[int]]:
    """A1.1-A1.3's model, test image, its label and noise levels t = T/4, T/2, 3T/4 (each section's tool noises
    the image with a fresh generator of the report's seed: the same noise in all three)."""
    m = ctx.part_a_model()
    T = m.schedule.num_steps
    x, labels = test_images(ctx, m, out, 1)
    out.settings.update({"t": [T // 4, T // 2, 3 * T // 4], "T": T, "image": labels[0]})
    return m, x, labels, out.settings["t"]


def sec_a1_1(ctx: Context, out: SectionOut) -> None:
    m, x, labels, ts = _noised_image(ctx, out)
    r = tools.forward(m, x, ts, seed=ctx.generator())
    _shown(ctx, out, "A1.1", "forward", r, _rows(labels))
    out.caption = (
        "Forward process x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps at t = T/4, T/2, 3T/4 (the noisy row); the "
        "forward tool also shows the Gaussian blur of each (A1.2)."
    )


def sec_a1_2(ctx: Context, out: SectionOut) -> None:
    from diffusionlab.filters import scaled_blur

    m, x, labels, ts = _noised_image(ctx, out)
    r = tools.one_step_denoise(m, x, ts, methods=("blur",), seed=ctx.generator())
    _shown(ctx, out, "A1.2", "blur", r, _rows(labels))
    k, s = scaled_blur(m.image_shape[-2], 5, 2.0)
    out.settings["blur"] = f"kernel {k}, sigma {s:g} (5 and 2 at 64 px, scaled)"
    out.caption = "Classical denoising: a Gaussian blur of the noisy image at the same t. It removes noise and detail."


def sec_a1_3(ctx: Context, out: SectionOut) -> None:
    m, x, labels, ts = _noised_image(ctx, out)
    r = tools.one_step_denoise(m, x, ts, methods=("one-step",), seed=ctx.generator())
    _shown(ctx, out, "A1.3", "one-step", r, _rows(labels))
    out.caption = (
        "One-step denoising x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t) with the unconditional "
        f"prompt ({show_prompt(r.settings['prompt'])})."
    )


def sec_a1_4(ctx: Context, out: SectionOut) -> None:
    from diffusionlab.sampling import timesteps_for
    from diffusionlab.tools.image import ITERATIVE_WHY, default_i_start

    m = ctx.part_a_model()
    ts = timesteps_for(m, edit=True)
    i_start, every = default_i_start(m), 5
    x, labels = test_images(ctx, m, out, 1)
    r = tools.iterative_denoise(m, x, i_start, every, seed=ctx.generator(), progress=False)
    _shown(ctx, out, "A1.4", "iterative", r, _rows(labels))
    t0 = ts[i_start]
    out.caption = (
        f"Iterative denoising along the strided timesteps from i_start = {i_start} (t = {t0}), every {every}th step "
        "shown, then the result next to one-step denoising and a blur of the same noisy image."
        + (ITERATIVE_WHY if m.kind.measured_defaults else "")
    )
    out.settings = {"i_start": i_start, "t_start": t0, "timesteps": f"{ts[0]}, {ts[1]}, ..., {ts[-1]} ({len(ts)})"}


def _strided_steps(m: Any) -> int:
    from diffusionlab.sampling import timesteps_for

    return len(timesteps_for(m, edit=True))


def sec_a1_5(ctx: Context, out: SectionOut) -> None:
    from diffusionlab.tools.inputs import prompt_of

    m = ctx.part_a_model()
    p = prompt_of(m, None)  # the unconditional prompt: '' for ours, "a high quality photo" for IF
    unguided = 1.0 if m.conditioned else None  # A1.5: no CFG (a model without prompts takes no scale at all)
    r = tools.sample(m, [p] if p else None, 5, None, unguided, ctx.seed, progress=False, strided=True)
    _shown(ctx, out, "A1.5", "samples", r, "5 samples, no guidance")
    out.caption = f"Sampling: iterative denoising from pure noise (i_start = 0), prompt {show_prompt(p)}, no guidance."
    out.settings = {"i_start": 0, "steps": _strided_steps(m), "prompt": p, "cfg": 1.0}


def sec_a1_6(ctx: Context, out: SectionOut) -> None:
    from diffusionlab.tools.inputs import prompt_of

    m = ctx.part_a_model()
    if is_ours(m) and m.conditioned:
        prompts, n = [m.class_names[i % m.num_classes] for i in range(5)], 1
        what = f"one of each class {', '.join(prompts)} (a row each)"
    else:
        prompts, n = [prompt_of(m, None)], 5
        what = f"prompt {show_prompt(prompts[0])}"
    r = tools.sample(m, prompts if any(prompts) else None, n, seed=ctx.seed, progress=False, strided=True)
    scale = r.settings["scale"]
    _shown(ctx, out, "A1.6", "cfg", r, f"CFG {scale:g}")
    out.caption = f"Classifier-free guidance eps = eps_u + {scale:g} (eps_c - eps_u): 5 samples, {what}."
    out.settings = {"cfg": scale, "prompts": prompts, "steps": _strided_steps(m)}


def _inputs(ctx: Context, m: Any, out: SectionOut) -> tuple[Tensor, list[str]]:
    """The test image and the hand-drawn one (saved as a figure of its own once)."""
    x, labels = test_images(ctx, m, out, 1)
    digit_like = is_ours(m) and m.image_shape[0] == 1  # grey models of ours draw white on black, like MNIST
    drawn, img = hand_drawn(m.image_shape, m.value_range, digit_like)
    path = ctx.fig("A1.7", "hand_drawn_input")
    if not path.exists():
        img.save(path)
    return torch.cat([x, drawn.to(x.device)]), [labels[0], "hand-drawn" + (" (inverted)" if digit_like else "")]


def _stacked(ctx: Context, out: SectionOut, section: str, name: str, parts: list, *caption: str, **cells: Any) -> None:
    """The section's figure: parts one above the other, saved and listed (with its caption and cells)."""
    from diffusionlab.figures.grid import save_png

    path = ctx.fig(section, name)
    save_png(stack_vertically(parts), path)
    out.figures.append(Figure(ctx.rel(path), *caption, **cells))


def sec_a1_7(ctx: Context, out: SectionOut) -> None:
    m = ctx.part_a_model()
    x, labels = _inputs(ctx, m, out)
    r = tools.sdedit(m, x, seed=ctx.generator(), progress=False)
    starts = r.settings["i_starts"]
    _shown(ctx, out, "A1.7", "sdedit", r, _rows(labels))
    drawn = ctx.fig("A1.7", "hand_drawn_input")
    out.figures.append(Figure(ctx.rel(drawn), "the hand-drawn input, drawn in code with PIL"))
    out.caption = (
        "SDEdit: noise the image to ts[i_start], then denoise with CFG. A small i_start (much noise) makes a new "
        "image; a large one stays close to the input."
    )
    out.settings = {
        "i_start": starts,
        "prompt": r.settings["prompt"],
        "cfg": r.settings["scale"],
        "steps": _strided_steps(m),
    }


MASK_WHY = (
    " At 28 px the course's mask (scaled) would lie on a digit's background (10 % of the shipped test digits' ink "
    "under it): this one covers the top half of the digit (46 %)."
)


def sec_a1_7_2(ctx: Context, out: SectionOut) -> None:
    from diffusionlab.images import default_mask, rect_mask

    m = ctx.part_a_model()
    x, labels = _inputs(ctx, m, out)
    _, h, w = m.image_shape
    masks = [default_mask(m.image_shape), rect_mask(m.image_shape, h // 2, h, 0, w)]  # the default; lower half
    first = "course mask (rows 2-19, cols 24-41 at 64 px)" if h >= 64 else "top half of the digit (rows 4-13)"
    mask_names = [first, "lower half"]
    r = tools.inpaint(m, x, torch.cat(masks).to(x.device), seed=ctx.generator(), progress=False)  # a mask each
    _shown(ctx, out, "A1.7.2", "inpaint", r, _rows([f"{a}, {b}" for a, b in zip(labels, mask_names, strict=True)]))
    out.caption = (
        "Inpainting: from pure noise; after every step x <- m x + (1 - m) forward(x_orig, t), so new content "
        "appears only where the mask is 1 (white)." + ("" if h >= 64 else MASK_WHY)
    )
    out.settings = {"masks": mask_names, "prompt": r.settings["prompt"], "cfg": r.settings["scale"]}


def sec_a1_7_3(ctx: Context, out: SectionOut) -> None:
    m = ctx.part_a_model()
    prompt = prompts_for(m)["translate"]
    x, labels = _inputs(ctx, m, out)
    r = tools.translate(m, x, prompt, seed=ctx.generator(), progress=False)
    _shown(ctx, out, "A1.7.3", "translate", r, _rows(labels))
    out.caption = f"Conditional image-to-image: SDEdit guided by the real prompt {show_prompt(prompt)}."
    out.settings = {"prompt": prompt, "i_start": r.settings["i_starts"], "cfg": r.settings["scale"]}


# Digit illusions shown in A1.8 / A1.9: pairs that the held-out judge reads as asked, with the rate measured over
# all ordered pairs (docs/illusions.md, "Showcase"); not 6/9, which needs no illusion (a 6 turned over is a 9).
# (prompt 1, prompt 2, view, measured rate); hybrids: (far, near, measured rate)
DIGIT_ANAGRAMS = [
    ("3", "8", "rot180", "held-out judge 8 of 8 images (N = 8, seed 0)"),
    ("2", "7", "flip", "held-out judge 8 of 8 images (N = 8, seed 0)"),
]
DIGIT_HYBRIDS = [("1", "8", "held-out judge 8 of 8 images (N = 8, seed 0); hybrids overall 24 %")]


def _showcase(m: Any, what: str) -> list[tuple]:
    """The measured showcase for digit models (DIGIT_ANAGRAMS / DIGIT_HYBRIDS), the fixed prompts otherwise
    (no rate)."""
    names = list(m.class_names)
    if is_ours(m) and names[:10] == [str(i) for i in range(10)]:
        return DIGIT_ANAGRAMS if what == "anagrams" else DIGIT_HYBRIDS
    return [(*p, None) for p in prompts_for(m)[what]]


def _reading_cells(r: Any, out: SectionOut) -> list[Cell]:
    """The ranker's verdict on each reading of each image, in the grid's reading order (one row per reading)."""
    probs, passed = r.settings.get("reading_probabilities"), r.settings.get("reading_passed")
    if probs is None:
        if r.settings.get("readings_unchecked"):
            out.notes.append(f"readings not checked: {r.settings['readings_unchecked']}")
        return []
    names = r.settings["reading_names"]
    return [Cell(f"{name}: {probs[j][k]:.2f}", passed[j][k]) for k, name in enumerate(names) for j in range(len(probs))]


def _illusion_figure(ctx: Context, out: SectionOut, section: str, name: str, made: list[tuple]) -> dict:
    """A1.8/A1.9's figure: each tool result's own figure (the images and their readings, each framed by the ranker's
    verdict), one above the other, the verdicts as cells under it; the settings: the pairs (with the rate measured
    for each) and what the ranker read. made: (the pair, its measured rate or None, the tool's Result) each.
    Returns the last result's settings (the scale and blur the tool chose)."""
    n = ctx.budget.pair_n
    cells = [c for _, _, r in made for c in _reading_cells(r, out)]
    _stacked(ctx, out, section, name, [r.figure() for *_, r in made], cells=cells, cells_per_row=n if cells else None)
    out.settings = {
        "pairs": [pair + (f", measured: {rate}" if rate else "") for pair, rate, _ in made],
        "n": n,
        "readings": [f"{pair}: {r.settings['readings']}" for pair, _, r in made],
    }
    return made[-1][2].settings


def sec_a1_8(ctx: Context, out: SectionOut) -> None:
    m = ctx.part_a_model()
    made = []
    for k, (p1, p2, view, rate) in enumerate(_showcase(m, "anagrams")):
        r = tools.anagram(
            m, [p1, p2], view, ctx.budget.pair_n, seed=ctx.generator(k), view_seed=ctx.seed, progress=False
        )
        made.append((f"{show_prompt(p1)} / {show_prompt(p2)} ({view})", rate, r))
    out.settings["cfg"] = _illusion_figure(ctx, out, "A1.8", "anagrams", made)["scale"]
    out.caption = (
        "Visual anagrams: eps = (CFG(x_t, p1) + view^-1(CFG(view(x_t), p2))) / 2, all branches in one batch. "
        "Top row of each: the images; bottom row: the same images through the view, each framed green when the "
        "shipped ranker reads it as its prompt and red when not. For digits the pairs are ones that a held-out "
        "judge (a classifier that never ranks) reads both ways at the measured rate beside each "
        "(docs/illusions.md); not 6/9, which needs no illusion. The success over all ordered class pairs of our "
        "models is in the Scores section."
    )


def sec_a1_9(ctx: Context, out: SectionOut) -> None:
    m = ctx.part_a_model()
    made = []
    for j, (low, high, rate) in enumerate(_showcase(m, "hybrids")):
        r = tools.hybrid(m, [low, high], ctx.budget.pair_n, seed=ctx.generator(j), progress=False)
        made.append((f"far {show_prompt(low)} / near {show_prompt(high)}", rate, r))
    last = _illusion_figure(ctx, out, "A1.9", "hybrids", made)
    far = last.get("lowpass") == "far"
    out.settings["lowpass"] = (
        f"the far view's (pooled by {FAR_FACTOR})" if far else f"kernel {last['kernel']}, sigma {last['sigma']:g}"
    )
    out.settings["reading balance"] = "on" if last.get("balance") else "off"
    out.caption = (
        "Hybrid images: eps = lowpass(CFG(x_t, p_low)) + highpass(CFG(x_t, p_high)); seen from afar (the low-pass "
        "row, framed by the ranker's far reading) they show the first prompt, up close (framed by the near "
        "reading) the second. On our models the low-pass is the far view's own filter and the ranker balances the two "
        "components' CFG while sampling. At 28 px most hybrids fail (docs/illusions.md measures the rate): the "
        "frames and the readings say which images did not work."
    )
