"""Part A commands: noise, denoise, sdedit, inpaint, anagram, hybrid (diffusion as an image tool).

Each writes one labelled grid PNG (--out) and, with --save-all DIR, every single image. Lists such as --t and
--i-start take comma-separated values or a repeated option: `--t 250,500,750` or `--t 250 --t 500`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer
from PIL import Image
from torch import Tensor

from diffusionlab.checks import check_batch, check_output_file, check_output_folder, write_together
from diffusionlab.commands.common import (
    DeviceOpt,
    EtaOpt,
    ForceOpt,
    ModelDirOpt,
    ModelOpt,
    OffloadOpt,
    PromptEmbedsOpt,
    SamplerOpt,
    SeedOpt,
    VarianceOpt,
    cfg_callback,
    generator_for,
    n_callback,
    open_model,
    wrote,
)
from diffusionlab.errors import DiffusionLabError
from diffusionlab.figures import show_prompt, stack_vertically
from diffusionlab.steps import choose_step_rule

ImageOpt = Annotated[
    list[str],
    typer.Option(
        "--image",
        "-i",
        help="Input image (PNG/JPEG, any size and mode: resized and centre-cropped to the model's) or test:N, "
        "test digit N of the model's data set. Repeat for several images.",
    ),
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="The grid PNG to write.")]
SaveAllOpt = Annotated[Path | None, typer.Option("--save-all", help="Also write every single image into this folder.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder with the model's test IDX files (t10k-*), for --image test:N; else the cache, else the "
        "shipped sample of its first 100 test images (no download).",
    ),
]
InvertOpt = Annotated[
    bool, typer.Option("--invert", help="Invert input images: black-on-white drawings -> white-on-black MNIST.")
]
ScaleOpt = Annotated[
    float | None,
    typer.Option(
        "--scale", "--cfg", help="CFG scale (default 7 for IF, 5 for our MNIST models).", callback=cfg_callback
    ),
]
NOpt = Annotated[int, typer.Option("-n", help="Results per input (or in all), made in one batch.", callback=n_callback)]


# -- helpers ------------------------------------------------------------------------------------------------------
def int_list(values: list[str] | None, what: str) -> list[int]:
    out = []
    for v in values or []:
        for part in str(v).replace(" ", ",").split(","):
            if part:
                try:
                    out.append(int(part))
                except ValueError:
                    raise DiffusionLabError(f"{what}: {part!r} is not an integer") from None
    return out


def default_ts(model) -> list[int]:
    """T/4, T/2, 3T/4: the course's 250, 500, 750 for T = 1000 (75, 150, 225 for T = 300)."""
    T = model.schedule.num_steps
    return [T // 4, T // 2, 3 * T // 4]


def check_image_files(specs: list[str] | None, mask: str | None = None) -> None:
    """Read every --image and --mask file once before the model is loaded, so that a missing, broken or too large
    one is refused before the slow part (test:N and rect:/default masks need the model: checked with it)."""
    from diffusionlab.images import open_image

    if not specs:
        raise DiffusionLabError("no --image given; pass a PNG/JPEG file or test:N (test image N of the data set)")
    for spec in [*specs, *([mask] if mask else [])]:
        if not spec.startswith(("test:", "rect:")) and spec != "default":
            open_image(spec)


def load_inputs(model, specs: list[str], data_dir: Path | None, invert: bool) -> tuple[Tensor, list[str]]:
    """--image values -> (k, C, H, W) in the model's value range, and a short label for each. test:N images come
    from diffusionlab.testdigits (--data-dir, the cache or the shipped sample; never a download); one line says
    which."""
    from diffusionlab.data import to_float
    from diffusionlab.images import load_image
    from diffusionlab.testdigits import load_test_images

    if not specs:
        raise DiffusionLabError("no --image given; pass a PNG/JPEG file or test:N (test image N of the data set)")
    images, labels, sources = [], [], set()
    for spec in specs:
        if spec.startswith("test:"):
            data = getattr(model, "config", {}).get("data")
            if data is None:
                raise DiffusionLabError(f"--image {spec}: test:N needs one of our MNIST-like models; give a file")
            try:
                idx = int(spec[5:])
            except ValueError:
                raise DiffusionLabError(f"--image {spec}: N in test:N must be an integer") from None
            test_image, _, source = load_test_images(data, [idx], data_dir)
            sources.add(source)
            x = to_float(test_image, model.value_range)
            if invert:
                lo, hi = model.value_range
                x = lo + hi - x
            images.append(x)
            labels.append(f"test {idx}")
        else:
            images.append(load_image(spec, model.image_shape, model.value_range, invert))
            labels.append(Path(spec).stem[:12])
    for source in sorted(sources):
        print(f"test images: {source}")
    return torch.cat(images).to(model.device), labels


def prompt_of(model, prompt: str | None) -> str:
    from diffusionlab.edits import unconditional_prompt

    p = unconditional_prompt(model) if prompt is None else prompt
    model.encode([p])  # an unknown prompt fails here, with the list of valid ones
    return p


def prompts_of(model, prompts: list[str]) -> list[str]:
    """Validate (and, for IF, cache the embeddings of) several prompts with ONE encode call: one T5 load at most."""
    model.encode(list(prompts))
    return list(prompts)


def finish(
    grid: Image.Image,
    out: Path,
    save_all: Path | None,
    singles: dict[str, Tensor],
    value_range,
    force: bool,
) -> None:
    """Write the grid and, with --save-all, each single image (name -> (C, H, W)); nothing is overwritten."""
    from diffusionlab.figures import save_png
    from diffusionlab.images import save_image

    writers = {out: lambda path: save_png(grid, path)}
    if save_all is not None:
        for name, img in singles.items():
            single = check_output_file(save_all / f"{name}.png", force, "--save-all")
            writers[single] = lambda path, img=img: save_image(img, path, value_range)
    write_together(writers)
    wrote(out, *([f"{len(singles)} images in {save_all}"] if save_all is not None else []))


def _safe(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in s) or "none"


def check_outputs(out: Path | None, default: str, save_all: Path | None, force: bool) -> Path:
    """--out (or its default) and --save-all, checked before the model is loaded; returns the grid's path."""
    if save_all is not None:
        check_output_folder(save_all)
    return check_output_file(out if out is not None else Path(default), force)


# -- commands -----------------------------------------------------------------------------------------------------
def noise(
    image: ImageOpt = None,
    t: Annotated[
        list[str] | None, typer.Option("--t", help="Timesteps, e.g. 250,500,750 (0..T-1; default T/4, T/2, 3T/4).")
    ] = None,
    kernel: Annotated[int | None, typer.Option(help="Blur kernel (default 5 at 64 px, scaled).")] = None,
    sigma: Annotated[float | None, typer.Option(help="Blur sigma (default 2 at 64 px, scaled).")] = None,
    out: OutOpt = None,
    save_all: SaveAllOpt = None,
    data_dir: DataDirOpt = None,
    invert: InvertOpt = False,
    model: ModelOpt = "mnist",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    model_dir: ModelDirOpt = None,
    prompt_embeds: PromptEmbedsOpt = None,
    offload: OffloadOpt = False,
) -> None:
    """Forward process (A1.1) and classical Gaussian-blur denoising (A1.2): the image noised to each t, and blurred.

    Example: diffusionlab noise --image test:0 --t 50,100,200 --out noise.png
    """
    from diffusionlab.edits import blur, forward
    from diffusionlab.figures import grid_image

    path = check_outputs(out, "noise.png", save_all, force)
    check_image_files(image)
    m = open_model(model, device, model_dir, prompt_embeds, offload)
    ts = int_list(t, "--t") or default_ts(m)
    for tt in ts:
        m.schedule.check_timestep(tt)
    x, labels = load_inputs(m, image, data_dir, invert)
    noisy = forward(m, x, ts, generator_for(seed))  # (len(ts), k, C, H, W)
    blurred = torch.stack([blur(nx, kernel, sigma) for nx in noisy])
    parts, singles = [], {}
    for j, label in enumerate(labels):
        row = torch.stack([torch.cat([x[j : j + 1], noisy[:, j]]), torch.cat([x[j : j + 1], blurred[:, j]])])
        parts.append(
            grid_image(
                row.flatten(0, 1),
                len(ts) + 1,
                m.value_range,
                row_labels=["noisy", "blurred"],
                col_labels=["original"] + [f"t={tt}" for tt in ts],
                title=label,
            )
        )
        for i, tt in enumerate(ts):
            singles[f"{_safe(label)}_noisy_t{tt}"] = noisy[i, j]
            singles[f"{_safe(label)}_blur_t{tt}"] = blurred[i, j]
    finish(stack_vertically(parts), path, save_all, singles, m.value_range, force)


def denoise(
    image: ImageOpt = None,
    t: Annotated[
        list[str] | None,
        typer.Option("--t", help="Timesteps for blur and one-step, e.g. 250,500,750 (default T/4, T/2, 3T/4)."),
    ] = None,
    method: Annotated[
        list[str] | None, typer.Option("--method", help="blur, one-step, iterative (repeat; default all three).")
    ] = None,
    i_start: Annotated[int, typer.Option("--i-start", help="Iterative: index into the strided timesteps.")] = 10,
    every: Annotated[int, typer.Option("--every", help="Iterative: show every k-th step.")] = 5,
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="Condition (default: unconditional).")] = None,
    scale: Annotated[
        float, typer.Option("--scale", "--cfg", help="CFG scale (1 = no guidance, the course).", callback=cfg_callback)
    ] = 1.0,
    kernel: Annotated[int | None, typer.Option(help="Blur kernel (default 5 at 64 px, scaled).")] = None,
    sigma: Annotated[float | None, typer.Option(help="Blur sigma (default 2 at 64 px, scaled).")] = None,
    out: OutOpt = None,
    save_all: SaveAllOpt = None,
    data_dir: DataDirOpt = None,
    invert: InvertOpt = False,
    model: ModelOpt = "mnist",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    model_dir: ModelDirOpt = None,
    prompt_embeds: PromptEmbedsOpt = None,
    offload: OffloadOpt = False,
    sampler: SamplerOpt = None,
    variance: VarianceOpt = None,
    eta: EtaOpt = None,
) -> None:
    """Denoise a noised image: blur (A1.2), one-step estimate (A1.3), iterative strided DDPM (A1.4).

    blur/one-step: original | noisy | estimate at each --t. iterative: starts at the strided timestep i_start
    (t = 690 for IF, 190 for T = 300 models), shows every --every step and compares with one-step and blur there.

    Example: diffusionlab denoise --image test:0 --method one-step --method iterative
    """
    from diffusionlab import edits
    from diffusionlab.figures import grid_image
    from diffusionlab.sampling import check_i_start

    methods = method or ["blur", "one-step", "iterative"]
    bad = [mm for mm in methods if mm not in ("blur", "one-step", "iterative")]
    if bad:
        raise DiffusionLabError(f"unknown --method {bad[0]!r}; choose blur, one-step or iterative")
    if every < 1:
        raise DiffusionLabError("--every must be at least 1")
    path = check_outputs(out, "denoise.png", save_all, force)
    check_image_files(image)
    step_rule = choose_step_rule(sampler, variance, eta)
    m = open_model(model, device, model_dir, prompt_embeds, offload)
    ts = int_list(t, "--t") or default_ts(m)
    for tt in ts:
        m.schedule.check_timestep(tt)
    strided = edits.default_timesteps(m)
    if "iterative" in methods:
        check_i_start(strided, i_start)
    if "blur" in methods or "iterative" in methods:
        edits.blur(torch.zeros(1, *m.image_shape), kernel, sigma)  # a bad --kernel/--sigma fails now, not after
    p = prompt_of(m, prompt)
    x, labels = load_inputs(m, image, data_dir, invert)
    g = generator_for(seed)
    parts, singles = [], {}
    one = [mm for mm in methods if mm != "iterative"]
    if one:
        noisy = edits.forward(m, x, ts, g)
        for j, label in enumerate(labels):
            cells, cols = [], ["original", "noisy"] + one
            for i, tt in enumerate(ts):
                row = [x[j], noisy[i, j]]
                if "blur" in one:
                    row.append(edits.blur(noisy[i, j : j + 1], kernel, sigma)[0])
                if "one-step" in one:
                    row.append(edits.one_step_denoise(m, noisy[i, j : j + 1], tt, p, scale)[0])
                cells += row
                for name, img in zip(cols[1:], row[1:], strict=True):
                    singles[f"{_safe(label)}_{name}_t{tt}"] = img
            parts.append(
                grid_image(torch.stack(cells), len(cols), m.value_range, [f"t={tt}" for tt in ts], cols, label)
            )
    if "iterative" in methods:
        t0 = strided[i_start]
        x_t = edits.forward(m, x, [t0], g)[0]
        frames: list[tuple[int, Tensor]] = [(t0, x_t)]

        def keep(state: dict) -> None:
            if (state["i"] - i_start + 1) % every == 0 and state["t_prev"] >= 0:
                frames.append((state["t_prev"], state["x"]))

        clean = edits.iterative_denoise(m, x_t, i_start, p, scale, strided, g, keep, **step_rule)
        one_step = edits.one_step_denoise(m, x_t, t0, p, scale)
        blurred = edits.blur(x_t, kernel, sigma)
        cols = [f"t={tt}" for tt, _ in frames] + ["iterative", "one-step", "blur", "original"]
        for j, label in enumerate(labels):
            row = [f[j] for _, f in frames] + [clean[j], one_step[j], blurred[j], x[j]]
            parts.append(
                grid_image(torch.stack(row), len(row), m.value_range, None, cols, f"{label}: iterative from t={t0}")
            )
            singles[f"{_safe(label)}_iterative_from{t0}"] = clean[j]
            for tt, f in frames:
                singles[f"{_safe(label)}_iterative_frame_t{tt}"] = f[j]
    finish(stack_vertically(parts), path, save_all, singles, m.value_range, force)


def sdedit(
    image: ImageOpt = None,
    prompt: Annotated[
        str | None,
        typer.Option("--prompt", "-p", help="Condition: a class ('7', 'seven') or IF text; default unconditional."),
    ] = None,
    i_start: Annotated[
        list[str] | None, typer.Option("--i-start", help="Start indices into the strided timesteps (1,3,5,7,10,20).")
    ] = None,
    n: NOpt = 1,
    scale: ScaleOpt = None,
    out: OutOpt = None,
    save_all: SaveAllOpt = None,
    data_dir: DataDirOpt = None,
    invert: InvertOpt = False,
    model: ModelOpt = "mnist",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    model_dir: ModelDirOpt = None,
    prompt_embeds: PromptEmbedsOpt = None,
    offload: OffloadOpt = False,
    sampler: SamplerOpt = None,
    variance: VarianceOpt = None,
    eta: EtaOpt = None,
) -> None:
    """SDEdit image-to-image (A1.7) and, with a real --prompt, text/class-conditional image-to-image (A1.7.3).

    Noise the image to the strided timestep of each i_start, then denoise with CFG: a small i_start makes a new
    image, a large one stays close to the input. Every i_start and every -n result run in one batch.

    Example: diffusionlab sdedit --image docs/examples/drawing_seven.png --invert --prompt 3 --i-start 1,3,5,7,10,20 -n 2
    """
    from diffusionlab import edits
    from diffusionlab.figures import grid_image
    from diffusionlab.sampling import check_i_start

    path = check_outputs(out, "sdedit.png", save_all, force)
    check_image_files(image)
    step_rule = choose_step_rule(sampler, variance, eta)
    m = open_model(model, device, model_dir, prompt_embeds, offload)
    starts = int_list(i_start, "--i-start") or list(edits.SDEDIT_I_STARTS)
    strided = edits.default_timesteps(m)
    for i in starts:
        check_i_start(strided, i)
    p = prompt_of(m, prompt)
    x, labels = load_inputs(m, image, data_dir, invert)
    check_batch(len(x) * n * len(starts), m.image_shape, "images x -n x --i-start")
    xs = x.repeat_interleave(n, 0)
    res = edits.sdedit(
        m, xs, p, starts, scale, generator_for(seed), strided, **step_rule
    )  # (len(starts), k*n, C, H, W)
    cells, rows, singles = [], [], {}
    for r in range(xs.shape[0]):
        label = labels[r // n] + (f" #{r % n + 1}" if n > 1 else "")
        rows.append(label)
        cells += [res[s, r] for s in range(len(starts))] + [xs[r]]
        for s, i in enumerate(starts):
            singles[f"{_safe(label)}_istart{i}"] = res[s, r]
    cols = [f"i={i} (t={strided[i]})" for i in starts] + ["original"]
    scale_v = edits.default_scale(m) if scale is None else scale
    grid = grid_image(
        torch.stack(cells), len(cols), m.value_range, rows, cols, f"SDEdit, prompt {show_prompt(p)}, cfg {scale_v:g}"
    )
    finish(grid, path, save_all, singles, m.value_range, force)


def inpaint(
    image: ImageOpt = None,
    mask: Annotated[
        str,
        typer.Option(
            "--mask",
            help="Mask image of the model's size (white = new content), 'default' (the course mask, scaled) or "
            "rect:r0:r1:c0:c1 (rows r0:r1, cols c0:c1).",
        ),
    ] = "default",
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="Condition for the new content.")] = None,
    n: NOpt = 1,
    scale: ScaleOpt = None,
    out: OutOpt = None,
    save_all: SaveAllOpt = None,
    data_dir: DataDirOpt = None,
    invert: InvertOpt = False,
    model: ModelOpt = "mnist",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    model_dir: ModelDirOpt = None,
    prompt_embeds: PromptEmbedsOpt = None,
    offload: OffloadOpt = False,
    sampler: SamplerOpt = None,
    variance: VarianceOpt = None,
    eta: EtaOpt = None,
) -> None:
    """Inpainting (A1.7.2): new content inside the mask, the original (exactly) outside it.

    Starts from pure noise; after every step the part outside the mask is replaced by the original noised to
    that step.

    Example: diffusionlab inpaint --image test:0 --mask rect:0:14:0:28 --prompt 7 -n 4
    """
    from diffusionlab import edits
    from diffusionlab.figures import grid_image
    from diffusionlab.images import load_mask

    path = check_outputs(out, "inpaint.png", save_all, force)
    check_image_files(image, mask)
    step_rule = choose_step_rule(sampler, variance, eta)
    m = open_model(model, device, model_dir, prompt_embeds, offload)
    mk = load_mask(mask, m.image_shape).to(m.device)
    p = prompt_of(m, prompt)
    x, labels = load_inputs(m, image, data_dir, invert)
    check_batch(len(x) * n, m.image_shape, "images x -n")
    xs = x.repeat_interleave(n, 0)
    res = edits.inpaint(m, xs, mk, p, scale, generator_for(seed), **step_rule)
    lo, hi = m.value_range
    mask_img = (lo + (hi - lo) * mk[0]).expand(m.image_shape)
    cells, singles = [], {}
    for j, label in enumerate(labels):
        masked = x[j] * (1 - mk[0]) + lo * mk[0]
        cells += [x[j], mask_img, masked] + [res[j * n + k] for k in range(n)]
        for k in range(n):
            singles[f"{_safe(label)}_inpaint_{k + 1}"] = res[j * n + k]
    cols = ["original", "mask", "kept"] + [f"result {k + 1}" for k in range(n)]
    grid = grid_image(
        torch.stack(cells), len(cols), m.value_range, labels, cols, f"inpainting, prompt {show_prompt(p)}"
    )
    finish(grid, path, save_all, singles, m.value_range, force)


def anagram(
    prompt: Annotated[list[str], typer.Option("--prompt", "-p", help="Two prompts: upright, then through the view.")],
    view: Annotated[
        str,
        typer.Option(
            "--view",
            help="rot180 (the course's flip), flip (upside down), hflip, rot90, rot270, negate, patch-permute[:N], "
            "pixel-permute, inner-circle, identity.",
        ),
    ] = "rot180",
    n: NOpt = 4,
    scale: ScaleOpt = None,
    out: OutOpt = None,
    save_all: SaveAllOpt = None,
    model: ModelOpt = "mnist",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    model_dir: ModelDirOpt = None,
    prompt_embeds: PromptEmbedsOpt = None,
    offload: OffloadOpt = False,
    sampler: SamplerOpt = None,
    variance: VarianceOpt = None,
    eta: EtaOpt = None,
) -> None:
    """Visual anagrams (A1.8): images that show the first prompt upright and the second through the view.

    eps = (CFG(x_t, p1) + view^-1(CFG(view(x_t), p2))) / 2; all -n images and both views in one batch.

    Example: diffusionlab anagram --prompt 6 --prompt 9 --view rot180 -n 8 --out six_nine.png
    """
    from diffusionlab import edits
    from diffusionlab.figures import grid_image
    from diffusionlab.views import get_view

    if len(prompt or []) != 2:
        raise DiffusionLabError(
            f"anagram needs exactly two --prompt options (upright, viewed), got {len(prompt or [])}"
        )
    path = check_outputs(out, "anagram.png", save_all, force)
    step_rule = choose_step_rule(sampler, variance, eta)
    m = open_model(model, device, model_dir, prompt_embeds, offload)
    check_batch(n, m.image_shape)
    v = get_view(view, m.image_shape, m.value_range, seed)
    p1, p2 = prompts_of(m, prompt)
    res = edits.anagram(m, p1, p2, v, n, scale, generator_for(seed), seed=seed, **step_rule)
    viewed = v.apply(res)
    grid = grid_image(
        torch.cat([res, viewed]),
        n,
        m.value_range,
        [f"{show_prompt(p1)} (upright)", f"{show_prompt(p2)} ({view})"],
        None,
        f"anagram, view {view}",
    )
    singles = {f"anagram_{k + 1}": res[k] for k in range(n)} | {
        f"anagram_{k + 1}_{_safe(view)}": viewed[k] for k in range(n)
    }
    finish(grid, path, save_all, singles, m.value_range, force)


def hybrid(
    prompt: Annotated[
        list[str], typer.Option("--prompt", "-p", help="Two prompts: low frequencies (far), then high (near).")
    ],
    sigma: Annotated[
        float | None, typer.Option(help="Low-pass sigma (default 2 at 64 px, scaled: 0.875 at 28).")
    ] = None,
    kernel: Annotated[int | None, typer.Option(help="Low-pass kernel (default 33 at 64 px, scaled: 15 at 28).")] = None,
    n: NOpt = 4,
    scale: ScaleOpt = None,
    out: OutOpt = None,
    save_all: SaveAllOpt = None,
    model: ModelOpt = "mnist",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    model_dir: ModelDirOpt = None,
    prompt_embeds: PromptEmbedsOpt = None,
    offload: OffloadOpt = False,
    sampler: SamplerOpt = None,
    variance: VarianceOpt = None,
    eta: EtaOpt = None,
) -> None:
    """Hybrid images (A1.9): the first prompt seen from afar (low frequencies), the second up close (high).

    eps = lowpass(CFG(x_t, p_low)) + highpass(CFG(x_t, p_high)); the grid also shows each image low-passed
    (as seen from afar).

    Example: diffusionlab hybrid --prompt 0 --prompt 1 -n 8 --out hybrid.png
    """
    from diffusionlab import edits
    from diffusionlab.figures import grid_image
    from diffusionlab.filters import check_blur, lowpass, scaled_blur

    if len(prompt or []) != 2:
        raise DiffusionLabError(f"hybrid needs exactly two --prompt options (low, high), got {len(prompt or [])}")
    path = check_outputs(out, "hybrid.png", save_all, force)
    step_rule = choose_step_rule(sampler, variance, eta)
    m = open_model(model, device, model_dir, prompt_embeds, offload)
    check_batch(n, m.image_shape)
    k0, s0 = scaled_blur(m.image_shape[1])
    k, s = kernel or k0, sigma or s0
    check_blur(k, s, m.image_shape[1], m.image_shape[2])
    p1, p2 = prompts_of(m, prompt)
    res = edits.hybrid(m, p1, p2, n, s, k, scale, generator_for(seed), **step_rule)
    far = lowpass(res, k, s)
    grid = grid_image(
        torch.cat([res, far]),
        n,
        m.value_range,
        ["hybrid", f"low-pass ({show_prompt(p1)})"],
        None,
        f"hybrid: far {show_prompt(p1)}, near {show_prompt(p2)}; kernel {k}, sigma {s:g}",
    )
    singles = {f"hybrid_{j + 1}": res[j] for j in range(n)}
    finish(grid, path, save_all, singles, m.value_range, force)


def register(app: typer.Typer) -> None:
    for fn in (noise, denoise, sdedit, inpaint, anagram, hybrid):
        app.command(fn.__name__)(fn)
