"""Part A commands: noise, denoise, sdedit, inpaint (diffusion as an image tool); anagram and hybrid are in
parta_illusions.

Each writes one labelled grid PNG (--out) and, with --save-all DIR, every single image. Lists such as --t and
--i-start take comma-separated values or a repeated option: `--t 250,500,750` or `--t 250 --t 500`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import torch
import typer

from diffusionlab.checks import check_output_file, check_output_folder, write_together
from diffusionlab.commands.common import ModelOptions, SamplingOptions, cfg_callback, n_callback, wrote
from diffusionlab.errors import DiffusionLabError
from diffusionlab.tools.result import Result

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


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """Where the input images come from and where the figure (and, with --save-all, every single result) goes:
    every Part A edit."""

    out: OutOpt = None
    save_all: SaveAllOpt = None
    data_dir: DataDirOpt = None
    invert: InvertOpt = False


@dataclasses.dataclass(frozen=True)
class BlurOptions:
    """The Gaussian blur of the classical denoiser (A1.2): noise and denoise."""

    kernel: Annotated[int | None, typer.Option(help="Blur kernel (default 5 at 64 px, scaled).")] = None
    sigma: Annotated[float | None, typer.Option(help="Blur sigma (default 2 at 64 px, scaled).")] = None


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


def check_image_files(specs: list[str] | None, mask: str | None = None) -> None:
    """Read every --image and --mask file once before the model is loaded, so that a missing, broken or too large
    one is refused before the slow part (test:N and rect:/default masks need the model: checked with it)."""
    from diffusionlab.images import open_image

    if not specs:
        raise DiffusionLabError("no --image given; pass a PNG/JPEG file or test:N (test image N of the data set)")
    for spec in [*specs, *([mask] if mask else [])]:
        if not spec.startswith(("test:", "rect:")) and spec != "default":
            open_image(spec)


def check_outputs(out: Path | None, default: str, save_all: Path | None, force: bool) -> Path:
    """--out (or its default) and --save-all, checked before the model is loaded; returns the grid's path."""
    if save_all is not None:
        check_output_folder(save_all)
    return check_output_file(out if out is not None else Path(default), force)


def finish(result: Result, out: Path, save_all: Path | None, force: bool) -> None:
    """Say where the test images came from; write the figure (settings in its PNG text) and, with --save-all,
    each single image; nothing is overwritten, and the files are written together or not at all."""
    from diffusionlab.images import save_image

    if "test images" in result.settings:
        print(f"test images: {result.settings['test images']}")
    writers = {out: result.save}
    if save_all is not None:
        for name, img in result.singles.items():
            single = check_output_file(save_all / f"{name}.png", force, "--save-all")
            writers[single] = lambda path, img=img: save_image(img, path, result.value_range)
    write_together(writers)
    wrote(out, *([f"{len(result.singles)} images in {save_all}"] if save_all is not None else []))


# -- commands -----------------------------------------------------------------------------------------------------
def noise(
    image: ImageOpt = None,
    t: Annotated[
        list[str] | None, typer.Option("--t", help="Timesteps, e.g. 250,500,750 (0..T-1; default T/4, T/2, 3T/4).")
    ] = None,
    blur: BlurOptions = BlurOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
    inputs: ImageOptions = ImageOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
    opts: ModelOptions = ModelOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
) -> None:
    """Forward process (A1.1) and classical Gaussian-blur denoising (A1.2): the image noised to each t, and blurred.

    Example: diffusionlab noise --image test:0 --t 50,100,200 --out noise.png
    """
    from diffusionlab import tools

    path = check_outputs(inputs.out, "noise.png", inputs.save_all, opts.force)
    check_image_files(image)
    m = opts.open()
    result = tools.forward(
        m, image, int_list(t, "--t") or None, blur.kernel, blur.sigma, opts.seed, inputs.data_dir, inputs.invert
    )
    finish(result, path, inputs.save_all, opts.force)


def denoise(
    image: ImageOpt = None,
    t: Annotated[
        list[str] | None,
        typer.Option("--t", help="Timesteps for blur and one-step, e.g. 250,500,750 (default T/4, T/2, 3T/4)."),
    ] = None,
    method: Annotated[
        list[str] | None, typer.Option("--method", help="blur, one-step, iterative (repeat; default all three).")
    ] = None,
    i_start: Annotated[
        int | None,
        typer.Option(
            "--i-start",
            help="Iterative: index into the strided timesteps (default 10 for IF, as the course; 15 at 28 px).",
        ),
    ] = None,
    every: Annotated[int, typer.Option("--every", help="Iterative: show every k-th step.")] = 5,
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="Condition (default: unconditional).")] = None,
    scale: Annotated[
        float, typer.Option("--scale", "--cfg", help="CFG scale (1 = no guidance, the course).", callback=cfg_callback)
    ] = 1.0,
    blur: BlurOptions = BlurOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
    inputs: ImageOptions = ImageOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
    opts: SamplingOptions = SamplingOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
) -> None:
    """Denoise a noised image: blur (A1.2), one-step estimate (A1.3), iterative strided DDPM (A1.4).

    blur/one-step: original | noisy | estimate at each --t. iterative: starts at the strided timestep i_start
    (default 10, t = 690, for IF; 15, t = 140, for T = 300 models: docs/parta_28px.md), shows every --every step and compares with one-step and blur there.

    Example: diffusionlab denoise --image test:0 --method one-step --method iterative
    """
    from diffusionlab import edits, tools
    from diffusionlab.model_protocol import generator_for
    from diffusionlab.sampling import check_i_start
    from diffusionlab.tools.image import default_i_start, edit_timesteps
    from diffusionlab.tools.result import stacked

    methods = method or ["blur", "one-step", "iterative"]
    bad = [mm for mm in methods if mm not in ("blur", "one-step", "iterative")]
    if bad:
        raise DiffusionLabError(f"unknown --method {bad[0]!r}; choose blur, one-step or iterative")
    if every < 1:
        raise DiffusionLabError("--every must be at least 1")
    path = check_outputs(inputs.out, "denoise.png", inputs.save_all, opts.force)
    check_image_files(image)
    rule = opts.rule()  # a bad combination fails before the model loads
    m = opts.open()
    if "iterative" in methods:
        check_i_start(edit_timesteps(m, opts.steps), default_i_start(m) if i_start is None else i_start)
    if "blur" in methods or "iterative" in methods:  # a bad --kernel/--sigma fails now, not after
        edits.blur(torch.zeros(1, *m.image_shape), blur.kernel, blur.sigma)
    g = generator_for(opts.seed)  # one stream through the methods, as before the tool layer
    common = dict(prompt=prompt, scale=scale, **vars(blur), seed=g, data_dir=inputs.data_dir, invert=inputs.invert)
    results = []
    one = [mm for mm in methods if mm != "iterative"]
    if one:
        results.append(tools.one_step_denoise(m, image, int_list(t, "--t") or None, methods=one, **common))
    if "iterative" in methods:
        results.append(tools.iterative_denoise(m, image, i_start, every, **common, **rule))
    finish(stacked(results), path, inputs.save_all, opts.force)


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
    inputs: ImageOptions = ImageOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
    opts: SamplingOptions = SamplingOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
) -> None:
    """SDEdit image-to-image (A1.7) and, with a real --prompt, text/class-conditional image-to-image (A1.7.3).

    Noise the image to the strided timestep of each i_start, then denoise with CFG: a small i_start makes a new
    image, a large one stays close to the input. Every i_start and every -n result run in one batch.

    Example: diffusionlab sdedit --image docs/examples/drawing_seven.png --invert --prompt 3 --i-start 1,3,5,7,10,20 -n 2
    """
    from diffusionlab import tools

    path = check_outputs(inputs.out, "sdedit.png", inputs.save_all, opts.force)
    check_image_files(image)
    rule = opts.rule()  # a bad combination fails before the model loads
    m = opts.open()
    starts = int_list(i_start, "--i-start") or None  # None: the course's that fit the model (tools.sdedit)
    result = tools.sdedit(m, image, prompt, starts, n, scale, opts.seed, inputs.data_dir, inputs.invert, **rule)
    finish(result, path, inputs.save_all, opts.force)


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
    inputs: ImageOptions = ImageOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
    opts: SamplingOptions = SamplingOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
) -> None:
    """Inpainting (A1.7.2): new content inside the mask, the original (exactly) outside it.

    Starts from pure noise; after every step the part outside the mask is replaced by the original noised to
    that step.

    Example: diffusionlab inpaint --image test:0 --mask rect:0:14:0:28 --prompt 7 -n 4
    """
    from diffusionlab import tools

    path = check_outputs(inputs.out, "inpaint.png", inputs.save_all, opts.force)
    check_image_files(image, mask)
    rule = opts.rule()  # a bad combination fails before the model loads
    m = opts.open()
    result = tools.inpaint(m, image, mask, prompt, n, scale, opts.seed, inputs.data_dir, inputs.invert, **rule)
    finish(result, path, inputs.save_all, opts.force)


def register(app: typer.Typer) -> None:
    for fn in (noise, denoise, sdedit, inpaint):  # anagram, hybrid: parta_illusions (registered after these)
        app.command(fn.__name__)(fn)
