"""`diffusionlab sample`: the sampling tool (tools.sample) on the command line; it writes the tool's figure (its
settings in the PNG's text) and, with --gif, the sampling process."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from diffusionlab.checks import check_output_file, write_together
from diffusionlab.commands.common import SamplingOptions, cfg_callback, n_callback, speed_options, wrote

PromptsOpt = Annotated[
    list[str] | None,
    typer.Option("--prompt", "-p", help="Prompt(s): a class ('3', 'three', 'sneaker') or text (IF)."),
]
NOpt = Annotated[int, typer.Option("-n", help="Images per prompt.", callback=n_callback)]
CfgOpt = Annotated[
    float | None,
    typer.Option(
        "--cfg", help="CFG scale (default 5 for our models, 7 for IF; none without a prompt).", callback=cfg_callback
    ),
]
GridOutOpt = Annotated[Path, typer.Option(help="Output grid PNG.")]
GifOpt = Annotated[Path | None, typer.Option(help="Also write a GIF of the sampling process.")]


@dataclasses.dataclass(frozen=True)
class Stage2Options:
    """DeepFloyd IF's stage II (tools.sample's stage2, stage2_steps, noise_level)."""

    stage2: Annotated[
        bool, typer.Option("--stage2", help="DeepFloyd IF: upsample the 64 px results to 256 px with stage II.")
    ] = False
    stage2_steps: Annotated[int, typer.Option(help="Stage-II steps (IF default 50).")] = 50
    noise_level: Annotated[int, typer.Option(help="Stage-II noise level of the low-res image (IF default 250).")] = 250


FastOpt, CompileOpt = speed_options(
    "Fast path for our UNets, the default: BatchNorm folded into the convolutions, channels_last, --precision auto "
    "(bf16 only where measured faster), CUDA graphs on CUDA. --plain: the network as trained.",
    "the model call",
)


def sample(
    prompt: PromptsOpt = None,
    n: NOpt = 4,
    cfg_scale: CfgOpt = None,
    out: GridOutOpt = Path("samples.png"),
    gif: GifOpt = None,
    stage: Stage2Options = Stage2Options(),  # noqa: B008 - a bundle of options (common.with_bundles)
    fast: FastOpt = True,
    compile_: CompileOpt = True,
    opts: SamplingOptions = SamplingOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
) -> None:
    """Sample images from a model: one row per prompt, n images each, all in one batch.

    With torchrun (--nproc_per_node N) the images are split across the ranks (each draws its own noise from the
    seed and its rank) and rank 0 writes the grid.

    Example: diffusionlab sample --model mnist --prompt 3 --prompt seven -n 8 --out s.png
    """
    from diffusionlab import tools
    from diffusionlab.distributed import init_from_env
    from diffusionlab.figures.grid import save_gif
    from diffusionlab.model_protocol import resolve_device

    out = check_output_file(out, opts.force)
    if gif is not None:
        gif = check_output_file(gif, opts.force, "--gif")
    rule = opts.rule()
    ctx, dev = init_from_env(resolve_device(opts.device))
    if ctx.enabled:  # torchrun: this rank's device
        opts = dataclasses.replace(opts, device=str(dev))
    m = opts.open(fast=False)
    if fast:
        from diffusionlab.fastpath import accelerate

        accelerate(m, compile=compile_)
    frames: list | None = [] if gif else None
    more = dict(frames=frames, distributed=ctx, **dataclasses.asdict(stage))
    result = tools.sample(m, prompt, n, scale=cfg_scale, seed=opts.seed, **rule, **more)
    if result is None:  # torchrun: not rank 0
        return
    writers = {out: result.save}  # the settings in the PNG's text, as every tool's
    if gif:
        writers[gif] = lambda path: save_gif(frames, path, n, result.value_range)
    write_together(writers)  # the grid and the GIF, or neither
    wrote(*writers)


def register(app: typer.Typer) -> None:
    app.command()(sample)
