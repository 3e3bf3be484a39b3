"""`diffusionlab train` (Part B) and `diffusionlab sample`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffusionlab.checks import check_batch, check_count, check_output_file, write_together
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
    n_callback,
    open_model,
    steps_callback,
    wrote,
)
from diffusionlab.errors import DiffusionLabError
from diffusionlab.steps import choose_step_rule

# -- `train` options (typer Annotated types, one per option; the values default to the course recipe) ------------
KindArg = Annotated[str, typer.Argument(help="denoiser (B1), time (B2) or class (B2.4).")]
ObjectiveOpt = Annotated[str, typer.Option(help="ddpm (predict the noise) or flow (flow matching, B3).")]
DataOpt = Annotated[str, typer.Option(help="mnist or fashion-mnist.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="Folder with the four IDX files (.gz or raw); or a folder of images: one subfolder per class (its name "
        "is the prompt) or flat (unconditional), 10 %% held out as its test split; else the cache, downloaded once."
    ),
]
ImageSizeOpt = Annotated[
    int | None, typer.Option(help="Image folder: resize and centre-crop to N x N (a multiple of 4; default 32).")
]
HflipOpt = Annotated[bool, typer.Option("--hflip", help="Flip training images left-right at random (augmentation).")]
EpochsOpt = Annotated[int | None, typer.Option(help="Epochs (course: denoiser 5, DDPM 20, flow 10).")]
BatchSizeOpt = Annotated[int | None, typer.Option(help="Batch size (course: 256, 128, 64).")]
HiddenOpt = Annotated[int | None, typer.Option(help="UNet width D (course: 128 denoiser, 64 otherwise).")]
LrOpt = Annotated[float | None, typer.Option(help="Adam learning rate (course: 1e-4, 1e-3, 1e-2).")]
LrScheduleOpt = Annotated[
    str,
    typer.Option(
        "--lr-schedule",
        help="course: the LR x0.1 over the run, stepped after each epoch (the denoiser: constant); cosine: set "
        "every step, a 5 %% linear warm-up then a half cosine to 0 at the run's last step, for short runs "
        "(e.g. --max-steps 600 --lr-schedule cosine). A resumed run keeps its own.",
    ),
]
NumStepsOpt = Annotated[int | None, typer.Option(help="DDPM T (course: 300).")]
SigmaOpt = Annotated[float | None, typer.Option(help="Denoiser: training noise level, z = x + sigma eps (0.5).")]
PureNoiseOpt = Annotated[
    bool, typer.Option("--pure-noise", help="Denoiser: learn to map pure noise z ~ N(0, I) to digits (B1.2.3).")
]
MaxStepsOpt = Annotated[int | None, typer.Option(help="Stop after this many optimizer steps (quick runs).")]
RunOutOpt = Annotated[Path | None, typer.Option(help="Run directory (default runs/<data>-<kind>[-flow]).")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue the run in --out exactly where it stopped.")]
FiguresOpt = Annotated[bool, typer.Option(help="Write the Part B figures into the run directory.")]
TrainFastOpt = Annotated[
    bool,
    typer.Option(
        "--fast/--plain",
        help="Fast path, the default: channels_last, foreach Adam, --precision auto (bf16 only where measured "
        "faster); on CUDA also CUDA graphs and fused Adam. --plain: eager fp32, as the course.",
    ),
]
TrainCompileOpt = Annotated[
    bool, typer.Option("--compile/--no-compile", help="torch.compile the train step on the CUDA fast path.")
]
LogEveryOpt = Annotated[int, typer.Option(help="Losses reach loss.csv (still one row per step) every this many steps.")]
EmaDecayOpt = Annotated[
    float | None,
    typer.Option(help="EMA of the weights (exported and sampled; raw ones in snapshots/raw): decay, 0 = off."),
]
SaveEveryOpt = Annotated[
    int | None,
    typer.Option(help="Also checkpoint every N steps inside an epoch: a SIGKILL then loses at most N steps."),
]

# -- `sample` options ----------------------------------------------------------------------------------------------
PromptsOpt = Annotated[
    list[str] | None,
    typer.Option("--prompt", "-p", help="Prompt(s): a class ('3', 'three', 'sneaker') or text (IF)."),
]
NOpt = Annotated[int, typer.Option("-n", help="Images per prompt.", callback=n_callback)]
StepsOpt = Annotated[
    int | None,
    typer.Option(
        help="Sampling steps (default: all T for our DDPMs, 34 strided for IF, 300/50 Euler for flow).",
        callback=steps_callback,
    ),
]
CfgOpt = Annotated[
    float | None, typer.Option("--cfg", help="CFG scale (default 5 for our models, 7 for IF).", callback=cfg_callback)
]
GridOutOpt = Annotated[Path, typer.Option(help="Output grid PNG.")]
GifOpt = Annotated[Path | None, typer.Option(help="Also write a GIF of the sampling process.")]
Stage2Opt = Annotated[
    bool, typer.Option("--stage2", help="DeepFloyd IF: upsample the 64 px results to 256 px with stage II.")
]
Stage2StepsOpt = Annotated[int, typer.Option(help="Stage-II steps (IF default 50).")]
NoiseLevelOpt = Annotated[int, typer.Option(help="Stage-II noise level of the low-res image (IF default 250).")]
SampleFastOpt = Annotated[
    bool,
    typer.Option(
        "--fast/--plain",
        help="Fast path for our UNets, the default: BatchNorm folded into the convolutions, channels_last, "
        "--precision auto (bf16 only where measured faster), CUDA graphs on CUDA. --plain: the network as trained.",
    ),
]
SampleCompileOpt = Annotated[
    bool, typer.Option("--compile/--no-compile", help="torch.compile the model call on the CUDA fast path.")
]


def train(
    kind: KindArg,
    objective: ObjectiveOpt = "ddpm",
    data: DataOpt = "mnist",
    data_dir: DataDirOpt = None,
    image_size: ImageSizeOpt = None,
    hflip: HflipOpt = False,
    epochs: EpochsOpt = None,
    batch_size: BatchSizeOpt = None,
    hidden: HiddenOpt = None,
    lr: LrOpt = None,
    lr_schedule: LrScheduleOpt = "course",
    num_steps: NumStepsOpt = None,
    sigma: SigmaOpt = None,
    pure_noise: PureNoiseOpt = False,
    max_steps: MaxStepsOpt = None,
    out: RunOutOpt = None,
    resume: ResumeOpt = False,
    seed: SeedOpt = 0,
    figures: FiguresOpt = True,
    device: DeviceOpt = "auto",
    fast: TrainFastOpt = True,
    compile_: TrainCompileOpt = True,
    log_every: LogEveryOpt = 50,
    ema_decay: EmaDecayOpt = None,
    save_every: SaveEveryOpt = None,
) -> None:
    """Train a course UNet from scratch with the course recipe (SPEC Part B); every default is the course's.

    Writes into the run directory: model.safetensors + model.json (every epoch), train_state.safetensors
    (for --resume), loss.csv (every step), loss.png, snapshots/epoch_E.*, figures/*.png and sampling.gif.

    Several processes: torchrun --nproc_per_node N -m diffusionlab train ... (DistributedDataParallel; nccl on
    CUDA, gloo on CPU; each rank a slice of every global batch; rank 0 writes the run).

    Example: diffusionlab train class --data-dir data/mnist --epochs 1 --max-steps 50 --out runs/t

    Example: diffusionlab train denoiser --pure-noise --data-dir data/mnist   (what a one-step model makes of noise)
    """
    from diffusionlab import tools

    recipe_values = dict(epochs=epochs, batch_size=batch_size, hidden=hidden, lr=lr, num_steps=num_steps)
    recipe_values |= dict(
        lr_schedule=lr_schedule,
        max_steps=max_steps,
        seed=seed,
        ema_decay=ema_decay,
        sigma=sigma,
        pure_noise=pure_noise or None,
        image_size=image_size,
        hflip=hflip or None,
    )
    summary = tools.train(
        kind,
        objective,
        data,
        data_dir,
        out,
        resume,
        figures,
        device,
        fast,
        compile_,
        log_every,
        save_every,
        **recipe_values,
    )
    if summary is not None:  # None: not rank 0 under torchrun
        _print_summary(summary)


def _print_summary(summary: dict) -> None:
    """The line `train` ends with, and the files it wrote."""
    config, run_dir = summary["config"], summary["run_dir"]
    loss = f"{summary['loss']:.5f}" if summary["loss"] is not None else "n/a"
    where = f"epoch {summary['epoch']}"
    if summary["batch_in_epoch"]:  # stopped inside an epoch (--max-steps)
        where = f"epoch {summary['epoch'] + 1} (step {summary['batch_in_epoch']} of {summary['batches_per_epoch']})"
    print(
        f"trained {config.data} {config.kind} {config.objective_name}: {where}, step {summary['step']} in all, "
        f"mean loss {loss}, {summary['seconds']:.1f} s of training"
    )
    figures = sorted((run_dir / "figures").glob("*.*"))
    shown = [f"{len(figures)} figures in {run_dir / 'figures'}"] if figures else []
    wrote(run_dir / "model.safetensors", run_dir / "loss.csv", run_dir / "loss.png", *shown)
    if not figures and summary["batch_in_epoch"]:
        print("no figures yet: they are drawn at the end of an epoch, and this run stopped inside one")


def sample(
    model: ModelOpt = "mnist",
    prompt: PromptsOpt = None,
    n: NOpt = 4,
    steps: StepsOpt = None,
    cfg_scale: CfgOpt = None,
    seed: SeedOpt = 0,
    out: GridOutOpt = Path("samples.png"),
    gif: GifOpt = None,
    stage2: Stage2Opt = False,
    stage2_steps: Stage2StepsOpt = 50,
    noise_level: NoiseLevelOpt = 250,
    force: ForceOpt = False,
    device: DeviceOpt = "auto",
    model_dir: ModelDirOpt = None,
    prompt_embeds: PromptEmbedsOpt = None,
    offload: OffloadOpt = False,
    fast: SampleFastOpt = True,
    compile_: SampleCompileOpt = True,
    sampler: SamplerOpt = None,
    variance: VarianceOpt = None,
    eta: EtaOpt = None,
) -> None:
    """Sample images from a model: one row per prompt, n images each, all in one batch.

    With torchrun (--nproc_per_node N) the images are split across the ranks (each draws its own noise from the
    seed and its rank) and rank 0 writes the grid.

    Example: diffusionlab sample --model mnist --prompt 3 --prompt seven -n 8 --out s.png
    """
    from diffusionlab import tools
    from diffusionlab.distributed import init_from_env
    from diffusionlab.edits import default_scale
    from diffusionlab.figures.grid import grid_image, save_gif, save_png
    from diffusionlab.model_protocol import resolve_device

    out = check_output_file(out, force)
    if gif is not None:
        gif = check_output_file(gif, force, "--gif")
    ctx, dev = init_from_env(resolve_device(device))
    if ctx.enabled:
        device = str(dev)
    step_rule = choose_step_rule(sampler, variance, eta)
    m = open_model(model, device, model_dir, prompt_embeds, offload, fast=False)
    prompts = list(prompt or [])
    if prompts and getattr(m, "num_classes", 1) == 0:
        raise DiffusionLabError(f"{getattr(m, 'name', model)} is not class-conditioned; drop --prompt")
    check_batch(n * max(1, len(prompts)), m.image_shape, "-n x --prompt")
    s2 = open_stage2(m, stage2_steps, noise_level) if stage2 else None  # checked before stage I runs
    scale = default_scale(m) if cfg_scale is None else cfg_scale
    frames: list | None = [] if gif else None
    if fast:
        from diffusionlab.fastpath import accelerate

        accelerate(m, compile=compile_)
    if ctx.enabled:  # torchrun: each rank samples its share of the images; rank 0 gathers and writes them
        x = _sample_sharded(m, prompts, n, steps, scale, seed, ctx, frames, step_rule)
        if x is None:  # not rank 0
            return
    else:
        x = tools.sample(m, prompts, n, steps, scale, seed, frames, True, sampler, variance, eta).images
    if s2 is not None:
        x = _upscale(s2, m, x, prompts, n, stage2_steps, noise_level, seed)
    labels = [p for p in prompts] if prompts else None
    title = f"{getattr(m, 'name', model)}  seed={seed}" + (f"  cfg={scale}" if prompts else "")
    settings = {"tool": "sample", "model": getattr(m, "name", model), "prompts": prompts, "n": n, "steps": steps}
    settings |= {"scale": scale, "seed": seed, "stage2": stage2, **step_rule}
    grid = grid_image(x, n, m.value_range, row_labels=labels, title=title)
    writers = {out: lambda path: save_png(grid, path, settings)}  # the settings in the PNG's text, as every tool's
    if gif:
        writers[gif] = lambda path: save_gif(frames, path, n, m.value_range)
    write_together(writers)  # the grid and the GIF, or neither
    wrote(*writers)


def _sample_sharded(m, prompts: list[str], n: int, steps, scale: float, seed: int, ctx, frames, step_rule):
    """`sample` under torchrun: each rank samples its share; rank 0 gets every image (None elsewhere)."""
    from diffusionlab.distributed import destroy, sharded_generate
    from diffusionlab.sampling import timesteps_for

    ts = timesteps_for(m, steps)
    every = max(1, len(ts) // 30)
    kwargs = dict(step_rule=step_rule, timesteps=ts, flow_steps=steps, frame_every=every)
    x = sharded_generate(m, prompts or None, n, scale, seed, ctx, frames, **kwargs)
    destroy(ctx)
    return x if ctx.is_main else None


def _upscale(s2, m, x, prompts: list[str], n: int, stage2_steps: int, noise_level: int, seed: int):
    """--stage2: stage I's images x4 with IF stage II, its noise from seed + 1."""
    from diffusionlab.model_protocol import generator_for
    from diffusionlab.upscale import upscale

    cond = s2.encode([p for p in prompts for _ in range(n)] or [getattr(m, "default_prompt", "")] * len(x))
    gen = generator_for(seed + 1)
    return upscale(s2, x, cond, s2.null(1), num_steps=stage2_steps, noise_level=noise_level, generator=gen)


def open_stage2(m, steps: int, noise_level: int):
    """--stage2: DeepFloyd IF stage II, loaded and its options checked before stage I spends its time."""
    if not hasattr(m, "stage2"):
        raise DiffusionLabError("--stage2 upsampling is for DeepFloyd IF (--model deepfloyd)")
    check_count(steps, "--stage2-steps")
    s2 = m.stage2()
    top = s2.noising_schedule.num_steps - 1
    if not 0 <= noise_level <= top:
        raise DiffusionLabError(f"--noise-level must be between 0 and {top}, got {noise_level}")
    s2.timesteps(steps)  # a step count its scheduler cannot space fails here
    return s2


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(train)
    app.command()(sample)
