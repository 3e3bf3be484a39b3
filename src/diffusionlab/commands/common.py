"""Pieces shared by the commands: the summary line, the --model loader, the options every command shares (their
values are checked while the command line is parsed, by the rules in diffusionlab.checks)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from diffusionlab import checks
from diffusionlab.backends import model_help
from diffusionlab.steps import sampler_help, samplers_taking


def wrote(*paths: str | Path, what: str = "wrote") -> None:
    """The summary line every command ends with."""
    print(f"{what}: " + ", ".join(str(p) for p in paths), file=sys.stdout)


# -- option callbacks: a bad number is refused while the command line is parsed, before anything is loaded ------
def cfg_callback(value: float | None) -> float | None:
    return checks.check_scale(value, "--cfg")


def steps_callback(value: int | None) -> int | None:
    return checks.check_count(value, "--steps")


def n_callback(value: int | None) -> int | None:
    return checks.check_count(value, "-n")  # the upper bound needs the model's image size: checks.check_batch


def seed_callback(value: int) -> int:
    return checks.parse_seed(value, "--seed")


def precision_callback(value: str | None) -> str | None:
    from diffusionlab.precision import check_precision

    return None if value is None else check_precision(value)


# -- the options every command has: --threads and --precision (given to each command by with_runtime_options) --
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        help="CPU threads for torch (default: $DIFFUSIONLAB_THREADS, else one per core). Example: --threads 1",
        min=1,
    ),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="fp32, bf16 or auto (the default, also $DIFFUSIONLAB_PRECISION): bf16 autocast only where a short "
        "measured benchmark says it is faster on this machine (cached; docs/precision.md). Example: --precision fp32",
        callback=precision_callback,
    ),
]
RUNTIME_OPTIONS = {"threads": ThreadsOpt, "precision": PrecisionOpt}


def with_runtime_options(command):
    """The command with --threads and --precision added: applied to the process before it runs (torch's threads,
    the precision every model it loads runs in). A command that declares one of them itself gets the value
    instead (with $DIFFUSIONLAB_THREADS filled in) and applies it its own way."""
    signature = inspect.signature(command, eval_str=True)
    own = set(RUNTIME_OPTIONS) & set(signature.parameters)
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation in RUNTIME_OPTIONS.items()
        if name not in own
    ]

    @functools.wraps(command)
    def run(*args, **kwargs):
        from diffusionlab.environment import check_environment, env_int
        from diffusionlab.precision import set_default_precision

        check_environment()  # a bad variable is one line before any work, even one read late or not at all
        threads = kwargs.pop("threads", None) or env_int("DIFFUSIONLAB_THREADS", minimum=1)
        precision = kwargs.pop("precision", None)
        set_default_precision(precision)
        if "threads" in own:
            kwargs["threads"] = threads
        elif threads:
            import torch

            torch.set_num_threads(threads)
        if "precision" in own:
            kwargs["precision"] = precision
        return command(*args, **kwargs)

    run.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *added])
    run.__annotations__ = {p.name: p.annotation for p in run.__signature__.parameters.values()}
    return run


def speed_options(fast_help: str, compiled: str) -> tuple[Any, Any]:
    """--fast/--plain (what the fast path is for this command) and --compile/--no-compile (what it compiles)."""
    fast = Annotated[bool, typer.Option("--fast/--plain", help=fast_help)]
    compile_ = Annotated[
        bool, typer.Option("--compile/--no-compile", help=f"torch.compile {compiled} on the CUDA fast path.")
    ]
    return fast, compile_


# -- options every model-using command shares (typer Annotated types) ---------------------------------------
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help=model_help(),  # from the tables in backends.py and shipped_models.py
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N; default: CUDA when present, else CPU.")]
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Random seed; the same seed gives the same images.", callback=seed_callback)
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing output file.")]
ClassifierOpt = Annotated[  # the scoring commands' (evaluate, choose-guidance)
    str | None,
    typer.Option("--classifier", help="Classifier .safetensors (default: the shipped one of the model's data)."),
]
ModelDirOpt = Annotated[
    Path | None,
    typer.Option("--model-dir", help="DeepFloyd IF: a folder with the downloaded weights (else the HF cache)."),
]
PromptEmbedsOpt = Annotated[
    Path | None,
    typer.Option(
        "--prompt-embeds", help="DeepFloyd IF: a .pth dict {prompt: (1, 77, 4096) tensor}, as the course ships."
    ),
]
OffloadOpt = Annotated[bool, typer.Option("--offload", help="DeepFloyd IF: model CPU offload for small GPUs.")]


def open_model(
    model: str,
    device: str = "auto",
    model_dir: Path | None = None,
    prompt_embeds: Path | None = None,
    offload: bool = False,
    fast: bool = True,
):
    """--model and its DeepFloyd options -> a model that follows the protocol (backends.load_model, which
    gives the IF options to IF only); our UNets on the inference fast path unless fast=False (--plain)."""
    from diffusionlab.backends import load_model

    return load_model(model, device, fast=fast, model_dir=model_dir, prompt_embeds=prompt_embeds, offload=offload)


# -- the step rule of the sampler loop (every sampling command) ----------------------------------------------
SamplerOpt = Annotated[str | None, typer.Option("--sampler", help=sampler_help())]  # from the table in steps.py
VarianceOpt = Annotated[
    str | None,
    typer.Option(
        "--variance",
        help=f"{' or '.join(samplers_taking('variance'))} steps: beta (the course's), beta-tilde (the posterior's), "
        "learned-range (IF). Example: --variance beta-tilde",
    ),
]
EtaOpt = Annotated[
    float | None,
    typer.Option(
        "--eta",
        help=f"{' or '.join(samplers_taking('eta'))} steps: 0 deterministic .. 1 (= ddpm beta-tilde). Example: --eta 0.5",
    ),
]
StepsOpt = Annotated[
    int | None,
    typer.Option(
        "--steps",
        help="Sampling steps (default: the model kind's, the same as the API's and the web UI's). Example: --steps 30",
        callback=steps_callback,
    ),
]


# -- the bundles: one parameter in a command's signature, its options on the command line ---------------------
@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """--model, --seed, --device, --force and the DeepFloyd options, shared by every model-using command: a
    command takes `opts: ModelOptions` and `with_bundles` puts these options on its command line."""

    model: ModelOpt = "mnist"
    seed: SeedOpt = 0
    device: DeviceOpt = "auto"
    force: ForceOpt = False
    model_dir: ModelDirOpt = None
    prompt_embeds: PromptEmbedsOpt = None
    offload: OffloadOpt = False

    def open(self, fast: bool = True):
        """The model (open_model), our UNets on the fast path unless fast=False."""
        return open_model(self.model, self.device, self.model_dir, self.prompt_embeds, self.offload, fast)


@dataclasses.dataclass(frozen=True)
class SamplingOptions(ModelOptions):
    """ModelOptions and the sampler loop's: --steps, --sampler, --variance, --eta (every sampling command)."""

    steps: StepsOpt = None
    sampler: SamplerOpt = None
    variance: VarianceOpt = None
    eta: EtaOpt = None

    def rule(self) -> dict:
        """steps and the step rule as the tools take them; a bad combination fails here, before the model loads."""
        from diffusionlab.steps import choose_step_rule

        choose_step_rule(self.sampler, self.variance, self.eta)
        return dict(steps=self.steps, sampler=self.sampler, variance=self.variance, eta=self.eta)


def with_bundles(command):
    """The command with each parameter typed as a bundle (a dataclass of options: ModelOptions, SamplingOptions,
    parta.ImageOptions, ScoringOptions, ...) replaced, in its place, by the bundle's options, gathered back into one
    bundle when it runs."""
    signature = inspect.signature(command, eval_str=True)
    bundles = {
        name: p.annotation
        for name, p in signature.parameters.items()
        if isinstance(p.annotation, type) and dataclasses.is_dataclass(p.annotation)
    }
    if not bundles:
        return command
    params: list[inspect.Parameter] = []
    fields: dict[str, list[str]] = {}
    for name, p in signature.parameters.items():
        if name not in bundles:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if fields else p)
            continue
        hints = typing.get_type_hints(bundles[name], include_extras=True)
        fields[name] = [f.name for f in dataclasses.fields(bundles[name])]
        params += [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
            for f in dataclasses.fields(bundles[name])
        ]

    @functools.wraps(command)
    def run(*args, **kwargs):
        for name, bundle in bundles.items():
            kwargs[name] = bundle(**{f: kwargs.pop(f) for f in fields[name] if f in kwargs})
        return command(*args, **kwargs)

    run.__signature__ = signature.replace(parameters=params)
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run
