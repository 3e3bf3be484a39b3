"""`diffusionlab train` (Part B): a course UNet trained from scratch (tools.train)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from diffusionlab.commands.common import DeviceOpt, SeedOpt, speed_options, wrote

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
TrainFastOpt, TrainCompileOpt = speed_options(
    "Fast path, the default: channels_last, foreach Adam, --precision auto (bf16 only where measured faster); on "
    "CUDA also CUDA graphs and fused Adam. --plain: eager fp32, as the course.",
    "the train step",
)
LogEveryOpt = Annotated[int, typer.Option(help="Losses reach loss.csv (still one row per step) every this many steps.")]
EmaDecayOpt = Annotated[
    float | None,
    typer.Option(help="EMA of the weights (exported and sampled; raw ones in snapshots/raw): decay, 0 = off."),
]
SaveEveryOpt = Annotated[
    int | None,
    typer.Option(help="Also checkpoint every N steps inside an epoch: a SIGKILL then loses at most N steps."),
]


@dataclasses.dataclass(frozen=True)
class RecipeOptions:
    """The course recipe's values a run may change (None: the course's), in the order --help lists them."""

    image_size: ImageSizeOpt = None
    hflip: HflipOpt = False
    epochs: EpochsOpt = None
    batch_size: BatchSizeOpt = None
    hidden: HiddenOpt = None
    lr: LrOpt = None
    lr_schedule: LrScheduleOpt = "course"
    num_steps: NumStepsOpt = None
    sigma: SigmaOpt = None
    pure_noise: PureNoiseOpt = False
    max_steps: MaxStepsOpt = None

    def values(self) -> dict:
        """As tools.train takes them: a flag left off is None (the recipe's own)."""
        return dataclasses.asdict(self) | dict(pure_noise=self.pure_noise or None, hflip=self.hflip or None)


def train(
    kind: KindArg,
    objective: ObjectiveOpt = "ddpm",
    data: DataOpt = "mnist",
    data_dir: DataDirOpt = None,
    recipe: RecipeOptions = RecipeOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
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

    recipe_values = recipe.values() | dict(seed=seed, ema_decay=ema_decay)
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


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(train)
