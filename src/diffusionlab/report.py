"""`diffusionlab reproduce`: every deliverable of the course project (SPEC.md Part A and Part B) as one HTML report.

`reproduce(out_dir, ...)` runs one function per deliverable (A0, A1.1 ... A1.9, B1, B2, B2.4, B3, Fashion-MNIST,
scores), each timed and seeded, writes its figures into `<out>/figures/`, the scores into `<out>/scores.json` and
a self-contained `<out>/index.html` (no external CSS, JS or fonts; images by relative path).

- Part A runs on `--model` (default: the shipped MNIST class DDPM; `deepfloyd` runs the same sections on IF with
  the course's prompts) through `edits.py`, on the course's strided timesteps.
- Part B reads the shipped weights and loss logs (`diffusionlab/weights/`, or `$DIFFUSIONLAB_WEIGHTS_DIR`), or
  with `train=True` retrains every model first with the project's trainer into `<out>/runs/`.
- Anything missing (a shipped file, the data set) is said in its section; the report still finishes.

How much is sampled is set by a `Budget` (`FULL`, and `QUICK` for `--quick` and tests).
"""

from __future__ import annotations

import html
import json
import math
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw
from torch import Tensor
from tqdm.auto import tqdm

from diffusionlab.errors import DiffusionLabError
from diffusionlab.figures import show_prompt, stack_vertically
from diffusionlab.runtime import free_cores

WEIGHTS_ENV = "DIFFUSIONLAB_WEIGHTS_DIR"

# shipped name -> file stem in the weights folder (and the run directory name with --train)
PARTB_MODELS = {
    "mnist-denoiser": ("denoiser", "ddpm", "mnist"),
    "mnist-time": ("time", "ddpm", "mnist"),
    "mnist-class": ("class", "ddpm", "mnist"),
    "mnist-flow": ("class", "flow", "mnist"),
    "fashion-mnist-class": ("class", "ddpm", "fashion-mnist"),
}
SHIPPED_ALIASES = {"mnist": "mnist-class", "fashion-mnist": "fashion-mnist-class"}

# the course's DeepFloyd IF prompts (the 14 it shipped T5 embeddings for)
IF_PROMPTS = {
    "a0": ["an oil painting of a snowy mountain village", "a man wearing a hat", "a rocket ship"],
    "test": ["a photo of the amalfi cost", "a photo of a man"],
    "translate": "a rocket ship",
    "anagrams": [
        ("an oil painting of an old man", "an oil painting of people around a campfire", "rot180"),
        ("a photo of a dog", "a photo of a man", "flip"),
        ("an oil painting of a snowy mountain village", "a photo of the amalfi cost", "negate"),
    ],
    "hybrids": [("a lithograph of a skull", "a lithograph of waterfalls"), ("a photo of a dog", "a rocket ship")],
}


@dataclass(frozen=True)
class Budget:
    """How much each section samples. Part A always uses the course's strided timesteps (30 for T = 300)."""

    a0_counts: tuple[int, ...] = (10, 30)  # A0 step counts (T = 300 models; IF uses if_a0_counts)
    if_a0_counts: tuple[int, ...] = (20, 50)
    a0_per_prompt: int = 4
    pair_n: int = 3  # A1.8 / A1.9 images per prompt pair
    per_class: int = 4  # B2.4 / B3 / Fashion-MNIST samples per class
    final_class_steps: int | None = 100  # B2.4 final model (None = every step T-1..0, Algorithm B.2)
    snapshot_steps: int = 30  # B2.4 snapshots, Fashion-MNIST, B2: evenly spaced DDPM steps
    time_n: int = 20
    time_steps: int | None = 100
    flow_steps: int = 50  # B3 Euler steps (the course: 300 for the class model)
    score_per_class: int = 10
    score_steps: int = 30
    anagram_pairs: int | None = None  # None: all ordered digit pairs (90)
    digits: int = 6  # test digits in the B1 figures


FULL = Budget()
QUICK = Budget(
    a0_counts=(5, 10),
    if_a0_counts=(10, 20),
    a0_per_prompt=2,
    pair_n=1,
    per_class=1,
    final_class_steps=20,
    snapshot_steps=10,
    time_n=10,
    time_steps=10,
    flow_steps=10,
    score_per_class=2,
    score_steps=10,
    anagram_pairs=10,
    digits=3,
)


# -- what a section produces -------------------------------------------------------------------------------------
@dataclass
class Figure:
    path: str  # relative to the report folder
    caption: str = ""


@dataclass
class SectionOut:
    figures: list[Figure] = field(default_factory=list)
    caption: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    table: list[list[str]] | None = None  # first row = header
    status: str = "ok"  # ok, missing (something not in this install), error (a bug or failure)
    seconds: float = 0.0
    seed: int | None = None


@dataclass
class Section:
    id: str
    title: str
    part: str
    run: Callable[[Context, SectionOut], None]


# -- the context every section shares ----------------------------------------------------------------------------
def weights_dir(override: str | Path | None = None) -> Path:
    """Where the shipped weights are: the argument, else model.shipped_weights_dir() ($DIFFUSIONLAB_WEIGHTS_DIR or
    the package's weights/ folder)."""
    from diffusionlab.model import shipped_weights_dir

    return Path(override) if override is not None else shipped_weights_dir()


@dataclass
class Source:
    """One Part B model: where its weights, loss log and snapshots are (shipped files or a run directory)."""

    name: str
    weights: Path
    loss_csv: Path
    snapshots: list[tuple[int, Path]]
    where: str

    @property
    def exists(self) -> bool:
        return self.weights.is_file()

    def missing(self) -> str:
        return (
            f"{self.weights.name} is not in {self.weights.parent} ({self.where}); train it with "
            f"`diffusionlab train` or run `diffusionlab reproduce --train`"
        )


def _epoch_of(stem: str) -> int | None:
    for part in stem.replace("_", ".").split("."):
        if part.startswith("epoch") and part[5:].isdigit():
            return int(part[5:])
    return None


class Context:
    def __init__(
        self,
        out_dir: Path,
        model: str = "mnist",
        seed: int = 0,
        device: str = "auto",
        data_dir: Path | None = None,
        weights: Path | None = None,
        budget: Budget = FULL,
        runs: dict[str, Path] | None = None,
        model_kwargs: dict | None = None,
        download: bool = False,
    ) -> None:
        from diffusionlab.model import resolve_device

        self.out_dir = out_dir
        self.fig_dir = out_dir / "figures"
        self.model_spec = model
        self.seed = seed
        self.device = resolve_device(device)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.weights = weights_dir(weights)
        self.budget = budget
        self.runs = runs or {}
        self.model_kwargs = model_kwargs or {}
        self.download = download
        self._models: dict[str, Any] = {}
        self._splits: dict[tuple[str, str], Any] = {}
        self._part_a: Any = None
        self.scores: dict[str, Any] = {}

    # -- files --------------------------------------------------------------------------------------------------
    def fig(self, section_id: str, name: str, ext: str = "png") -> Path:
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        return self.fig_dir / f"{section_id.replace('.', '_')}_{name}.{ext}"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator("cpu").manual_seed(self.seed + offset)

    # -- data ---------------------------------------------------------------------------------------------------
    def data_dir_for(self, data: str) -> Path | None:
        """--data-dir holds MNIST (or DIR/<data>/); Fashion-MNIST is also looked for beside it (DIR/../fashion-mnist)."""
        d = self.data_dir
        if d is None:
            return None
        for cand in (d / data, d.parent / data):
            if cand.is_dir():
                return cand
        return d if data == "mnist" or d.name == data else None

    def split(self, data: str, which: str):
        """A split from --data-dir or the cache (no download unless asked), or None when it is not there."""
        from diffusionlab.data import load_split

        key = (data, which)
        if key not in self._splits:
            try:
                d = self.data_dir_for(data)
                self._splits[key] = load_split(data, which, d, download=self.download or d is not None)
            except DiffusionLabError:
                self._splits[key] = None
        return self._splits[key]

    # -- models -------------------------------------------------------------------------------------------------
    def source(self, name: str) -> Source:
        if name in self.runs:
            run = self.runs[name]
            snaps = sorted(
                (e, p) for p in (run / "snapshots").glob("epoch_*.safetensors") if (e := _epoch_of(p.stem)) is not None
            )
            return Source(name, run / "model.safetensors", run / "loss.csv", snaps, f"run {run}")
        w = self.weights
        snaps = sorted(
            (e, p) for p in w.glob(f"{name}.epoch*.safetensors") if (e := _epoch_of(p.stem[len(name) :])) is not None
        )
        return Source(name, w / f"{name}.safetensors", w / f"{name}.loss.csv", snaps, "shipped weights")

    def load(self, path: Path):
        from diffusionlab.model import CourseModel

        key = str(path)
        if key not in self._models:
            self._models[key] = CourseModel.from_checkpoint(path, self.device)
        return self._models[key]

    def partb_model(self, name: str):
        src = self.source(name)
        if not src.exists:
            raise MissingError(src.missing())
        return self.load(src.weights)

    def part_a_model(self):
        """--model: a shipped name (honouring the weights folder and --train runs), a path, or deepfloyd."""
        if self._part_a is None:
            spec = self.model_spec
            name = SHIPPED_ALIASES.get(spec, spec)
            if name in PARTB_MODELS:
                self._part_a = self.partb_model(name)
            else:
                from diffusionlab.commands.common import open_model

                self._part_a = open_model(spec, str(self.device), **self.model_kwargs)
        return self._part_a

    def score_model(self):
        """The class DDPM scored: --model when it is a class DDPM of ours on MNIST, else MNIST's class DDPM."""
        try:
            m = self.part_a_model()
            if getattr(m, "kind", None) == "class" and getattr(m, "objective", None) == "ddpm":
                if m.config.get("data") == "mnist":
                    return m
        except DiffusionLabError:
            pass
        return self.partb_model("mnist-class")

    def classifier(self, data: str):
        from diffusionlab.evaluation import load_classifier

        path = self.weights / f"{data}-classifier.safetensors"
        if not path.is_file():
            raise MissingError(f"{path.name} is not in {path.parent}; train it with `diffusionlab train-classifier`")
        return load_classifier(path, self.device)

    def digits(self, k: int, out: SectionOut, data: str = "mnist") -> Tensor:
        """k test images in [0, 1] from the data set; without the data files, k samples of the class DDPM."""
        split = self.split(data, "test")
        if split is not None:
            from diffusionlab.data import to_float

            return to_float(split.images[:k]).to(self.device)
        name = "mnist-class" if data == "mnist" else f"{data}-class"
        m = self.partb_model(name)
        from diffusionlab.evaluation import to_unit
        from diffusionlab.sampling import generate
        from diffusionlab.schedule import strided_timesteps

        prompts = [m.class_names[i % m.num_classes] for i in (7, 2, 1, 0, 4, 9, 5, 6, 3, 8)][:k]
        x = generate(m, prompts, 1, 5.0, self.seed, strided_timesteps(m.schedule.num_steps), progress=False)
        out.notes.append(
            f"no {data} test data in --data-dir or the cache: these 'test digits' are samples of the class DDPM "
            "(pass --data-dir or --download for real ones)"
        )
        return to_unit(x, m.value_range)


class MissingError(DiffusionLabError):
    """Something the section needs is not in this install (weights, data): the section says so."""


# -- small helpers -------------------------------------------------------------------------------------------------
def is_ours(m: Any) -> bool:
    return hasattr(m, "config") and isinstance(getattr(m, "config", None), dict) and "kind" in m.config


def hand_drawn(image_shape: tuple[int, int, int], value_range, digit_like: bool) -> tuple[Tensor, Image.Image]:
    """A drawing made in code, as a user would with a pen: a '7' (digit models; inverted to white on black, like
    MNIST) or a simple house under a sun in colour (RGB models). Returns ((1, C, H, W), the drawing)."""
    from diffusionlab.images import pil_to_tensor

    size = 280
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    if digit_like:
        d.line([(70, 60), (215, 60), (120, 235)], fill="black", width=26, joint="curve")
        d.line([(105, 150), (185, 150)], fill="black", width=20)
    else:
        d.rectangle([0, 190, size, size], fill=(60, 150, 60))
        d.ellipse([190, 20, 260, 90], fill=(250, 200, 30))
        d.rectangle([60, 120, 180, 220], fill=(180, 60, 50))
        d.polygon([(50, 125), (120, 60), (190, 125)], fill=(90, 60, 40))
        d.rectangle([105, 165, 135, 220], fill=(70, 40, 20))
    x = pil_to_tensor(img, image_shape, value_range, invert=digit_like)
    return x, img


def test_images(ctx: Context, m: Any, out: SectionOut, k: int = 1) -> tuple[Tensor, list[str]]:
    """k test images of the Part A model's data set (model range); IF or no data: images the model generates."""
    from diffusionlab import edits

    data = m.config.get("data") if is_ours(m) else None
    split = ctx.split(data, "test") if data else None
    if split is not None:
        from diffusionlab.data import to_float

        return to_float(split.images[:k], m.value_range).to(m.device), [f"test {i}" for i in range(k)]
    if data:
        out.notes.append(
            f"no {data} test data in --data-dir or the cache, so the 'test image' is a sample of the model itself "
            "(pass --data-dir or --download for real test digits)"
        )
        names = getattr(m, "class_names", [])
        prompts = [names[i % len(names)] for i in (7, 2, 1, 0)][:k] if getattr(m, "num_classes", 0) else [""] * k
    else:
        out.notes.append("the 'test image' is a sample of the model itself (no test set for this model)")
        prompts = (IF_PROMPTS["test"] * k)[:k]
    cond = m.encode(prompts) if any(prompts) else m.null(k)
    g = ctx.generator(1000)
    x = edits.sample(m, k, cond, generator=g, progress=False)
    return x, [f"generated {show_prompt(p)}" for p in prompts]


def prompts_for(m: Any) -> dict[str, Any]:
    """The prompts of each Part A deliverable for this model: class names for ours, the course's for IF."""
    names = list(getattr(m, "class_names", []) or [])
    if not is_ours(m):
        return IF_PROMPTS
    if not getattr(m, "num_classes", 0):
        return {"a0": [""], "translate": "", "anagrams": [("", "", "rot180")], "hybrids": [("", "")]}
    if names[:10] == [str(i) for i in range(10)]:
        return {
            "a0": ["0", "three", "7"],
            "translate": "3",
            "anagrams": [("6", "9", "rot180"), ("4", "7", "flip"), ("1", "0", "negate")],
            "hybrids": [("8", "1"), ("0", "7")],
        }
    k = len(names)
    return {
        "a0": [names[0], names[3 % k], names[7 % k]],
        "translate": names[9 % k],
        "anagrams": [(names[1 % k], names[3 % k], "rot180"), (names[7 % k], names[8 % k], "flip")],
        "hybrids": [(names[8 % k], names[1 % k]), (names[5 % k], names[9 % k])],
    }


def _timesteps_for(m: Any, count: int) -> list[int]:
    from diffusionlab.schedule import spaced_timesteps

    if hasattr(m, "timesteps") and callable(m.timesteps):
        return list(m.timesteps(count))
    return spaced_timesteps(m.schedule.num_steps, count)


# -- Part A ----------------------------------------------------------------------------------------------------------
def sec_a0(ctx: Context, out: SectionOut) -> None:
    from diffusionlab import edits
    from diffusionlab.figures import save_grid
    from diffusionlab.sampling import generate

    m = ctx.part_a_model()
    prompts = prompts_for(m)["a0"]
    scale = edits.default_scale(m)
    T = m.schedule.num_steps
    counts = ctx.budget.if_a0_counts if T >= 1000 else ctx.budget.a0_counts
    n = ctx.budget.a0_per_prompt
    last = None
    for count in counts:
        ts = _timesteps_for(m, count)
        x = generate(m, prompts, n, scale, ctx.seed, timesteps=ts, progress=False)
        last = x
        path = ctx.fig("A0", f"steps{count}")
        save_grid(
            x,
            path,
            n,
            m.value_range,
            row_labels=[show_prompt(p) for p in prompts],
            title=f"{count} steps, seed {ctx.seed}",
        )
        out.figures.append(Figure(ctx.rel(path), f"{len(ts)} inference steps ({ts[0]} .. {ts[-1]}), CFG {scale:g}"))
    out.caption = (
        f"Samples of {len(prompts)} prompts, {n} each, at {len(counts)} step counts; the same seed, so the same "
        "starting noise: more steps, more detail."
    )
    out.settings = {"model": getattr(m, "name", ctx.model_spec), "prompts": prompts, "steps": list(counts)}
    out.settings["cfg"] = scale
    if hasattr(m, "stage2") and last is not None:  # DeepFloyd IF: stage II upsampling to 256 px
        try:
            from diffusionlab.models.deepfloyd import upscale

            s2 = m.stage2()
            cond = s2.encode([p for p in prompts for _ in range(n)])
            big = upscale(s2, last, cond, generator=ctx.generator(), progress=False)
            path = ctx.fig("A0", "stage2")
            save_grid(big, path, n, s2.value_range, row_labels=prompts, title="stage II, 256 px")
            out.figures.append(Figure(ctx.rel(path), "stage II upsampling (x4) of the last row, CFG 4, 50 steps"))
        except DiffusionLabError as e:
            out.notes.append(f"stage II upsampling skipped: {e}")


def _forward_grid(ctx: Context, section: str, out: SectionOut, mode: str) -> None:
    from diffusionlab import edits
    from diffusionlab.figures import grid_image, save_png

    m = ctx.part_a_model()
    T = m.schedule.num_steps
    ts = [T // 4, T // 2, 3 * T // 4]
    x, labels = test_images(ctx, m, out, 1)
    noisy = edits.forward(m, x, ts, ctx.generator())  # (3, 1, C, H, W): the same noise in A1.1, A1.2 and A1.3
    parts = []
    if mode == "forward":
        cells = torch.cat([x, noisy[:, 0]])
        parts.append(grid_image(cells, len(ts) + 1, m.value_range, None, ["original"] + [f"t={t}" for t in ts]))
        out.caption = "Forward process x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps at t = T/4, T/2, 3T/4."
    elif mode == "blur":
        blurred = torch.stack([edits.blur(nx) for nx in noisy])
        cells = torch.cat([noisy[:, 0], blurred[:, 0]])
        parts.append(
            grid_image(cells, len(ts), m.value_range, ["noisy", "blurred"], [f"t={t}" for t in ts], "Gaussian blur")
        )
        from diffusionlab.filters import scaled_blur

        k, s = scaled_blur(m.image_shape[-2], 5, 2.0)
        out.settings["blur"] = f"kernel {k}, sigma {s:g} (5 and 2 at 64 px, scaled)"
        out.caption = (
            "Classical denoising: a Gaussian blur of the noisy image at the same t. It removes noise and detail."
        )
    else:
        rows = []
        for i, t in enumerate(ts):
            est = edits.one_step_denoise(m, noisy[i], t)
            rows += [x[0], noisy[i, 0], est[0]]
        parts.append(
            grid_image(
                torch.stack(rows), 3, m.value_range, [f"t={t}" for t in ts], ["original", "noisy", "one-step"], None
            )
        )
        out.caption = (
            "One-step denoising x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t) with the unconditional "
            f"prompt ({show_prompt(edits.unconditional_prompt(m))})."
        )
    path = ctx.fig(section, mode)
    save_png(stack_vertically(parts), path)
    out.figures.append(Figure(ctx.rel(path), labels[0]))
    out.settings.update({"t": ts, "T": T, "image": labels[0]})


def sec_a1_1(ctx: Context, out: SectionOut) -> None:
    _forward_grid(ctx, "A1.1", out, "forward")


def sec_a1_2(ctx: Context, out: SectionOut) -> None:
    _forward_grid(ctx, "A1.2", out, "blur")


def sec_a1_3(ctx: Context, out: SectionOut) -> None:
    _forward_grid(ctx, "A1.3", out, "one-step")


def sec_a1_4(ctx: Context, out: SectionOut) -> None:
    from diffusionlab import edits
    from diffusionlab.figures import grid_image, save_png

    m = ctx.part_a_model()
    ts = edits.default_timesteps(m)
    i_start, every = 10, 5
    x, labels = test_images(ctx, m, out, 1)
    g = ctx.generator()
    t0 = ts[i_start]
    x_t = edits.forward(m, x, [t0], g)[0]
    frames: list[tuple[int, Tensor]] = [(t0, x_t)]

    def keep(state: dict) -> None:
        if (state["i"] - i_start + 1) % every == 0 and state["t_prev"] >= 0:
            frames.append((state["t_prev"], state["x"]))

    clean = edits.iterative_denoise(m, x_t, i_start, None, 1.0, ts, g, keep, progress=False)
    one = edits.one_step_denoise(m, x_t, t0)
    blurred = edits.blur(x_t)
    row = [f[0] for _, f in frames] + [clean[0], one[0], blurred[0], x[0]]
    cols = [f"t={t}" for t, _ in frames] + ["iterative", "one-step", "blur", "original"]
    path = ctx.fig("A1.4", "iterative")
    save_png(grid_image(torch.stack(row), len(row), m.value_range, None, cols, f"from t={t0}"), path)
    out.figures.append(Figure(ctx.rel(path), labels[0]))
    out.caption = (
        f"Iterative denoising along the strided timesteps from i_start = {i_start} (t = {t0}), every {every}th step "
        "shown, then the result next to one-step denoising and a blur of the same noisy image."
    )
    out.settings = {"i_start": i_start, "t_start": t0, "timesteps": f"{ts[0]}, {ts[1]}, ..., {ts[-1]} ({len(ts)})"}


def sec_a1_5(ctx: Context, out: SectionOut) -> None:
    from diffusionlab import edits
    from diffusionlab.figures import save_grid

    m = ctx.part_a_model()
    x = edits.sample(m, 5, None, 1.0, generator=ctx.generator(), progress=False)
    path = ctx.fig("A1.5", "samples")
    save_grid(x, path, 5, m.value_range, title="5 samples, no guidance")
    out.figures.append(Figure(ctx.rel(path)))
    p = edits.unconditional_prompt(m)
    out.caption = f"Sampling: iterative denoising from pure noise (i_start = 0), prompt {show_prompt(p)}, no guidance."
    out.settings = {"i_start": 0, "steps": len(edits.default_timesteps(m)), "prompt": p, "cfg": 1.0}


def sec_a1_6(ctx: Context, out: SectionOut) -> None:
    from diffusionlab import edits
    from diffusionlab.figures import save_grid

    m = ctx.part_a_model()
    scale = edits.default_scale(m)
    if is_ours(m) and getattr(m, "num_classes", 0):
        prompts = [m.class_names[i % m.num_classes] for i in range(5)]
        cond = m.encode(prompts)
        what = f"one of each class {', '.join(prompts)}"
    else:
        prompts = [edits.unconditional_prompt(m)]
        cond = prompts[0]
        what = f"prompt {show_prompt(prompts[0])}"
    x = edits.sample(m, 5, cond, scale, generator=ctx.generator(), progress=False)
    path = ctx.fig("A1.6", "cfg")
    save_grid(x, path, 5, m.value_range, title=f"CFG {scale:g}")
    out.figures.append(Figure(ctx.rel(path)))
    out.caption = f"Classifier-free guidance eps = eps_u + {scale:g} (eps_c - eps_u): 5 samples, {what}."
    out.settings = {"cfg": scale, "prompts": prompts, "steps": len(edits.default_timesteps(m))}


def _inputs(ctx: Context, m: Any, out: SectionOut) -> tuple[Tensor, list[str]]:
    """The test image and the hand-drawn one (saved as a figure of its own once)."""
    x, labels = test_images(ctx, m, out, 1)
    digit_like = is_ours(m)
    drawn, img = hand_drawn(m.image_shape, m.value_range, digit_like)
    path = ctx.fig("A1.7", "hand_drawn_input")
    if not path.exists():
        img.save(path)
    return torch.cat([x, drawn.to(x.device)]), [labels[0], "hand-drawn" + (" (inverted)" if digit_like else "")]


def _sdedit_figure(ctx, m, section, name, x, labels, res, i_starts, title) -> Path:
    from diffusionlab.figures import grid_image, save_png

    parts = []
    for j, label in enumerate(labels):
        cells = torch.cat([res[:, j], x[j : j + 1]])
        cols = [f"i_start={i}" for i in i_starts] + ["original"]
        parts.append(grid_image(cells, len(cols), m.value_range, None, cols, f"{label}: {title}"))
    path = ctx.fig(section, name)
    save_png(stack_vertically(parts), path)
    return path


def sec_a1_7(ctx: Context, out: SectionOut) -> None:
    from diffusionlab import edits

    m = ctx.part_a_model()
    x, labels = _inputs(ctx, m, out)
    starts = list(edits.SDEDIT_I_STARTS)
    res = edits.sdedit(m, x, None, starts, generator=ctx.generator(), progress=False)
    path = _sdedit_figure(ctx, m, "A1.7", "sdedit", x, labels, res, starts, "SDEdit")
    drawn = ctx.fig("A1.7", "hand_drawn_input")
    out.figures.append(Figure(ctx.rel(path), "test image and a hand-drawn image"))
    out.figures.append(Figure(ctx.rel(drawn), "the hand-drawn input, drawn in code with PIL"))
    p = edits.unconditional_prompt(m)
    out.caption = (
        "SDEdit: noise the image to ts[i_start], then denoise with CFG. A small i_start (much noise) makes a new "
        "image; a large one stays close to the input."
    )
    out.settings = {
        "i_start": starts,
        "prompt": p,
        "cfg": edits.default_scale(m),
        "steps": len(edits.default_timesteps(m)),
    }


def sec_a1_7_2(ctx: Context, out: SectionOut) -> None:
    from diffusionlab import edits
    from diffusionlab.figures import grid_image, save_png
    from diffusionlab.images import default_mask, rect_mask

    m = ctx.part_a_model()
    x, labels = _inputs(ctx, m, out)
    _, h, w = m.image_shape
    masks = [default_mask(m.image_shape), rect_mask(m.image_shape, h // 2, h, 0, w)]  # course mask; lower half
    mask_names = ["course mask (rows 2-19, cols 24-41 at 64 px, scaled)", "lower half"]
    mask = torch.cat(masks).to(x.device)
    res = edits.inpaint(m, x, mask, generator=ctx.generator(), progress=False)
    lo, hi = m.value_range
    shown_mask = mask.expand_as(x) * (hi - lo) + lo
    parts = []
    for j, label in enumerate(labels):
        cells = torch.stack([x[j], shown_mask[j], x[j] * (1 - mask[j]) + lo * mask[j], res[j]])
        parts.append(
            grid_image(
                cells, 4, m.value_range, None, ["original", "mask", "kept", "inpainted"], f"{label}: {mask_names[j]}"
            )
        )
    path = ctx.fig("A1.7.2", "inpaint")
    save_png(stack_vertically(parts), path)
    out.figures.append(Figure(ctx.rel(path)))
    out.caption = (
        "Inpainting: from pure noise; after every step x <- m x + (1 - m) forward(x_orig, t), so new content "
        "appears only where the mask is 1 (white)."
    )
    out.settings = {"masks": mask_names, "prompt": edits.unconditional_prompt(m), "cfg": edits.default_scale(m)}


def sec_a1_7_3(ctx: Context, out: SectionOut) -> None:
    from diffusionlab import edits

    m = ctx.part_a_model()
    prompt = prompts_for(m)["translate"]
    x, labels = _inputs(ctx, m, out)
    starts = list(edits.SDEDIT_I_STARTS)
    res = edits.translate(m, x, prompt, starts, generator=ctx.generator(), progress=False)
    path = _sdedit_figure(ctx, m, "A1.7.3", "translate", x, labels, res, starts, f"towards {show_prompt(prompt)}")
    out.figures.append(Figure(ctx.rel(path)))
    out.caption = f"Conditional image-to-image: SDEdit guided by the real prompt {show_prompt(prompt)}."
    out.settings = {"prompt": prompt, "i_start": starts, "cfg": edits.default_scale(m)}


def sec_a1_8(ctx: Context, out: SectionOut) -> None:
    from diffusionlab import edits
    from diffusionlab.figures import grid_image, save_png
    from diffusionlab.views import get_view

    m = ctx.part_a_model()
    n = ctx.budget.pair_n
    parts, done = [], []
    for k, (p1, p2, view) in enumerate(prompts_for(m)["anagrams"]):
        v = get_view(view, m.image_shape, m.value_range, ctx.seed)
        res = edits.anagram(m, p1, p2, v, n, generator=ctx.generator(k), seed=ctx.seed, progress=False)
        rows = [f"{show_prompt(p1)} upright", f"{show_prompt(p2)} ({view})"]
        parts.append(grid_image(torch.cat([res, v.apply(res)]), n, m.value_range, rows, None, f"view {view}"))
        done.append(f"{show_prompt(p1)} / {show_prompt(p2)} ({view})")
    path = ctx.fig("A1.8", "anagrams")
    save_png(stack_vertically(parts), path)
    out.figures.append(Figure(ctx.rel(path)))
    out.caption = (
        "Visual anagrams: eps = (CFG(x_t, p1) + view^-1(CFG(view(x_t), p2))) / 2, all branches in one batch. "
        "Top row of each: the images; bottom row: the same images through the view."
    )
    out.settings = {"pairs": done, "n": n, "cfg": edits.default_scale(m)}


def sec_a1_9(ctx: Context, out: SectionOut) -> None:
    from diffusionlab import edits
    from diffusionlab.figures import grid_image, save_png
    from diffusionlab.filters import lowpass, scaled_blur

    m = ctx.part_a_model()
    n = ctx.budget.pair_n
    k, s = scaled_blur(m.image_shape[1])
    parts, done = [], []
    for j, (low, high) in enumerate(prompts_for(m)["hybrids"]):
        res = edits.hybrid(m, low, high, n, generator=ctx.generator(j), progress=False)
        far = lowpass(res, k, s)
        rows = ["hybrid", f"low-pass ({show_prompt(low)})"]
        parts.append(
            grid_image(
                torch.cat([res, far]), n, m.value_range, rows, None, f"far {show_prompt(low)}, near {show_prompt(high)}"
            )
        )
        done.append(f"far {show_prompt(low)} / near {show_prompt(high)}")
    path = ctx.fig("A1.9", "hybrids")
    save_png(stack_vertically(parts), path)
    out.figures.append(Figure(ctx.rel(path)))
    out.caption = (
        "Hybrid images: eps = lowpass(CFG(x_t, p_low)) + highpass(CFG(x_t, p_high)); seen from afar (the low-pass "
        "row) they show the first prompt, up close the second."
    )
    out.settings = {"pairs": done, "n": n, "lowpass": f"kernel {k}, sigma {s:g} (33 and 2 at 64 px, scaled)"}


# -- Part B ----------------------------------------------------------------------------------------------------------
def _loss_curve(ctx: Context, section: str, src: Source, out: SectionOut) -> None:
    from diffusionlab.figures import plot_curves
    from diffusionlab.training import read_loss_log

    if not src.loss_csv.is_file():
        out.notes.append(f"no loss log: {src.loss_csv.name} is not in {src.loss_csv.parent}")
        return
    try:
        losses = read_loss_log(src.loss_csv)
    except (KeyError, ValueError, TypeError) as e:
        out.notes.append(f"{src.loss_csv.name}: not a loss log of ours ({type(e).__name__}: {e}); no loss curve")
        return
    if not losses:
        out.notes.append(f"{src.loss_csv.name} is empty")
        return
    w = max(1, len(losses) // 50)
    smooth = [
        sum(losses[max(0, i - w + 1) : i + 1]) / len(losses[max(0, i - w + 1) : i + 1]) for i in range(len(losses))
    ]
    path = ctx.fig(section, "loss")
    series = {"training loss (per step)": losses}
    if w > 1:
        series[f"moving average ({w} steps)"] = smooth
    plot_curves(series, path, title=f"{src.name}: training loss", xlabel="step")
    out.figures.append(Figure(ctx.rel(path), f"loss curve, {len(losses)} steps, last {losses[-1]:.4g}"))
    out.settings["final loss (mean of the last 100 steps)"] = round(sum(losses[-100:]) / len(losses[-100:]), 5)


def _training_figures(ctx: Context, section: str, src: Source, out: SectionOut) -> None:
    """Figures written at training time (shipped in weights/figures/<name>*, or a --train run's figures/):
    copied into the report so that it stays self-contained."""
    import shutil

    if src.name in ctx.runs:
        found = sorted(p for p in (ctx.runs[src.name] / "figures").glob("*") if p.suffix in (".png", ".gif"))
    else:
        found = sorted(p for p in (ctx.weights / "figures").glob(f"{src.name}*") if p.suffix in (".png", ".gif"))
        found = [p for p in found if src.name in PARTB_MODELS and _owner(p.name) == src.name]
    for p in found:
        dest = ctx.fig(section, f"training_{p.stem}", p.suffix[1:])
        shutil.copyfile(p, dest)
        out.figures.append(Figure(ctx.rel(dest), f"written during training: {p.name}"))


def _owner(file_name: str) -> str | None:
    """The longest Part B model name a file name starts with (mnist-class vs mnist-classifier...)."""
    names = [n for n in PARTB_MODELS if file_name.startswith(n) and not file_name[len(n) :][:1].isalnum()]
    return max(names, key=len) if names else None


def _provenance(ctx: Context, src: Source, out: SectionOut) -> None:
    try:
        cfg = json.loads(src.weights.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return
    prov = cfg.get("provenance", {})
    train = cfg.get("train", {})
    out.settings["weights"] = f"{src.weights.name} ({src.where})"
    for key in ("epoch", "step", "loss", "train_seconds", "device"):
        if prov.get(key) is not None:
            out.settings[f"trained: {key}"] = prov[key]
    for key in ("epochs", "batch_size", "hidden", "lr"):
        if train.get(key) is not None:
            out.settings[f"recipe: {key}"] = train[key]
    if prov.get("command"):
        out.settings["command"] = prov["command"]


def _snapshots(ctx: Context, src: Source, out: SectionOut):
    """(epoch, model) of each snapshot that loads; one that does not is noted, not fatal."""
    for epoch, path in src.snapshots:
        try:
            yield epoch, ctx.load(path)
        except DiffusionLabError as e:
            out.notes.append(f"snapshot of epoch {epoch} skipped: {e}")


def _steps_label(m, count: int | None) -> tuple[list[int] | None, str]:
    from diffusionlab.schedule import full_timesteps, spaced_timesteps

    T = m.schedule.num_steps
    if count is None or count >= T:
        return full_timesteps(T), f"DDPM, every step ({T}, Algorithm B.2)"
    return spaced_timesteps(T, count), f"DDPM, {count} evenly spaced steps of T = {T} (strided, to save time)"


def sec_b1(ctx: Context, out: SectionOut) -> None:
    from diffusionlab import partb

    src = ctx.source("mnist-denoiser")
    digits = ctx.digits(ctx.budget.digits, out).cpu()
    path = partb.noising_grid(digits, ctx.fig("B1", "noising_grid"), seed=ctx.seed)
    out.figures.append(Figure(ctx.rel(path), "z = x + sigma eps at sigma 0, .2, .4, .5, .6, .8, 1"))
    out.caption = "Single-step denoising UNet (D = 128) trained at sigma = 0.5 with an L2 loss."
    out.settings["sigmas"] = list(partb.NOISE_SIGMAS)
    if not src.exists:
        out.status = "missing"
        out.notes.append(src.missing())
        return
    _provenance(ctx, src, out)
    for epoch, m in _snapshots(ctx, src, out):
        p = partb.denoiser_results(
            m, digits.to(m.device), ctx.fig("B1", f"denoised_epoch{epoch}"), 0.5, f"after epoch {epoch}", ctx.seed
        )
        out.figures.append(Figure(ctx.rel(p), f"test digits denoised after epoch {epoch} (snapshot)"))
    m = ctx.load(src.weights)
    final_epoch = json.loads(src.weights.with_suffix(".json").read_text()).get("provenance", {}).get("epoch", "final")
    p = partb.denoiser_results(
        m, digits.to(m.device), ctx.fig("B1", "denoised_final"), 0.5, f"final (epoch {final_epoch})", ctx.seed
    )
    out.figures.append(Figure(ctx.rel(p), f"test digits denoised by the final model (epoch {final_epoch})"))
    p = partb.sigma_sweep(m, digits[:3].to(m.device), ctx.fig("B1", "sigma_sweep"), seed=ctx.seed)
    out.figures.append(Figure(ctx.rel(p), "out of distribution: noise levels it was not trained for"))
    _loss_curve(ctx, "B1", src, out)
    _training_figures(ctx, "B1", src, out)


def sec_b2(ctx: Context, out: SectionOut) -> None:
    from diffusionlab import partb

    src = ctx.source("mnist-time")
    out.caption = "Time-conditioned DDPM (T = 300, D = 64): unconditional samples and the sampling process."
    if not src.exists:
        out.status = "missing"
        out.notes.append(src.missing())
        return
    _provenance(ctx, src, out)
    _loss_curve(ctx, "B2", src, out)
    _training_figures(ctx, "B2", src, out)
    b = ctx.budget
    for epoch, m in _snapshots(ctx, src, out):
        ts, how = _steps_label(m, b.snapshot_steps)
        paths = partb.time_samples(
            m,
            ctx.fig("B2", f"samples_epoch{epoch}"),
            b.time_n,
            ctx.seed,
            f"epoch {epoch}",
            timesteps=ts,
            progress=False,
        )
        out.figures.append(Figure(ctx.rel(paths[0]), f"after epoch {epoch} (snapshot); {how}"))
    m = ctx.load(src.weights)
    ts, how = _steps_label(m, b.time_steps)
    paths = partb.time_samples(
        m,
        ctx.fig("B2", "samples_final"),
        b.time_n,
        ctx.seed,
        "final",
        gif=ctx.fig("B2", "sampling", "gif"),
        timesteps=ts,
        frame_every=max(1, len(ts) // 30),
        progress=False,
    )
    out.figures.append(Figure(ctx.rel(paths[0]), f"{b.time_n} samples of the final model; {how}"))
    out.figures.append(Figure(ctx.rel(paths[1]), "the sampling process (GIF)"))
    out.settings["sampler"] = how


def _class_section(ctx: Context, out: SectionOut, section: str, name: str, final_steps, gif: bool) -> None:
    from diffusionlab import partb

    src = ctx.source(name)
    if not src.exists:
        out.status = "missing"
        out.notes.append(src.missing())
        return
    _provenance(ctx, src, out)
    _loss_curve(ctx, section, src, out)
    _training_figures(ctx, section, src, out)
    b = ctx.budget

    def run(m, label: str, fname: str, steps, with_gif: bool) -> None:
        kw: dict[str, Any] = {"progress": False}
        if m.objective == "flow":
            kw["flow_steps"] = b.flow_steps
            how = f"Euler, {b.flow_steps} steps (the course: 300)"
            every = max(1, b.flow_steps // 30)
        else:
            ts, how = _steps_label(m, steps)
            kw["timesteps"] = ts
            every = max(1, len(ts) // 30)
        g = ctx.fig(section, "sampling", "gif") if with_gif else None
        paths = partb.class_samples(
            m, ctx.fig(section, fname), b.per_class, 5.0, ctx.seed, label, gif=g, frame_every=every, **kw
        )
        out.figures.append(Figure(ctx.rel(paths[0]), f"{label}: {b.per_class} per class, CFG 5; {how}"))
        if g is not None:
            out.figures.append(Figure(ctx.rel(paths[1]), "the sampling process (GIF), final model"))
        out.settings[f"sampler ({label})"] = how

    for epoch, snap_model in _snapshots(ctx, src, out):
        run(snap_model, f"after epoch {epoch}", f"samples_epoch{epoch}", b.snapshot_steps, False)
    run(ctx.load(src.weights), "final model", "samples_final", final_steps, gif)


def sec_b2_4(ctx: Context, out: SectionOut) -> None:
    out.caption = (
        "Class-conditioned DDPM (one-hot class, dropped with p = 0.1) with classifier-free guidance, scale 5: "
        "samples of every digit, one column per class."
    )
    _class_section(ctx, out, "B2.4", "mnist-class", ctx.budget.final_class_steps, True)


def sec_b3(ctx: Context, out: SectionOut) -> None:
    out.caption = (
        "Flow matching (class-conditioned, the course's later version): x_t = (1 - t) x0 + t x1, predict "
        "u = x1 - x0, Euler sampling with CFG 5 on the velocity."
    )
    _class_section(ctx, out, "B3", "mnist-flow", None, True)


def sec_fashion(ctx: Context, out: SectionOut) -> None:
    out.caption = "The same class-conditioned DDPM recipe trained on Fashion-MNIST."
    _class_section(ctx, out, "B-fashion", "fashion-mnist-class", ctx.budget.snapshot_steps, False)


# -- scores ---------------------------------------------------------------------------------------------------------
def _pct(v: Any) -> str:
    return f"{100 * float(v):.2f} %" if isinstance(v, (int, float)) else "n/a"


def _num(v: Any) -> str:
    return f"{float(v):.3f}" if isinstance(v, (int, float)) else "n/a"


def _find(d: Any, *keys: str) -> Any:
    """The first value under any of keys, searched depth-first in nested dicts."""
    if not isinstance(d, dict):
        return None
    for k in keys:
        if k in d and not isinstance(d[k], dict):
            return d[k]
    for v in d.values():
        found = _find(v, *keys)
        if found is not None:
            return found
    return None


def sec_scores(ctx: Context, out: SectionOut) -> None:
    from diffusionlab import evaluation
    from diffusionlab.figures import grid_image, save_png
    from diffusionlab.schedule import spaced_timesteps

    b = ctx.budget
    m = ctx.score_model()
    data = m.config.get("data", "mnist")
    clf = ctx.classifier(data)
    live: dict[str, Any] = {"model": m.name, "classifier_test_accuracy": clf.test_accuracy}
    test, train = ctx.split(data, "test"), ctx.split(data, "train")
    if test is not None and train is not None:
        r = evaluation.evaluate_model(
            m, clf, b.score_per_class, 5.0, b.score_steps, ctx.seed, test, train, progress=False
        )
        r.pop("per_class_accuracy", None)
        live.update(r)
    else:
        labels = torch.arange(m.num_classes).repeat_interleave(b.score_per_class)
        imgs = evaluation.generate_class_samples(m, labels, 5.0, b.score_steps, ctx.seed, progress=False)
        live.update(
            conditional_accuracy=evaluation.conditional_accuracy(clf, imgs, labels),
            n_samples=len(labels),
            n_per_class=b.score_per_class,
            cfg_scale=5.0,
            steps=b.score_steps,
        )
        out.notes.append(f"no {data} train/test data in --data-dir or the cache: Frechet distances not computed")
    pairs = evaluation.ordered_pairs(m.num_classes)
    if b.anagram_pairs is not None:
        pairs = pairs[: b.anagram_pairs]
    ts = spaced_timesteps(m.schedule.num_steps, b.score_steps)
    a = evaluation.evaluate_anagrams(m, clf, "rot180", 1, 5.0, ctx.seed, pairs, ts, progress=False)
    images = a.pop("images")
    a.pop("per_pair", None)
    live["anagram"] = a
    from diffusionlab.views import get_view

    v = get_view("rot180", m.image_shape, (0.0, 1.0))
    k = m.num_classes
    full = len(pairs) == k * (k - 1)
    nrow = k - 1 if full else min(10, len(images))
    rows = [f"{a} ->" for a in range(k)] if full else None
    fig = stack_vertically(
        [
            grid_image(images, nrow, row_labels=rows, title="upright: prompt 1 (rows) -> prompt 2", cell=48),
            grid_image(v.apply(images), nrow, row_labels=rows, title="rotated 180 degrees: prompt 2", cell=48),
        ]
    )
    path = ctx.fig("scores", "anagrams")
    save_png(fig, path)
    out.figures.append(
        Figure(ctx.rel(path), f"the {len(pairs)} anagrams scored (pairs a->b in order: 0->1, 0->2, ...)")
    )

    # precomputed scores from the shipped JSONs
    shipped: dict[str, Any] = {}
    for name in ("mnist-class", "fashion-mnist-class", "mnist-flow", "mnist-time"):
        cfgp = ctx.weights / f"{name}.json"
        try:
            sc = json.loads(cfgp.read_text()).get("scores")
        except (OSError, ValueError):
            sc = None
        if sc:
            shipped[name] = sc
    classifiers = {}
    for d in ("mnist", "fashion-mnist"):
        try:
            classifiers[d] = json.loads((ctx.weights / f"{d}-classifier.json").read_text()).get("test_accuracy")
        except (OSError, ValueError):
            classifiers[d] = None
    ctx.scores.update(live=live, shipped=shipped, classifiers=classifiers)

    shipped_model = ctx.source("mnist-class")
    is_shipped = "mnist-class" not in ctx.runs and ctx._models.get(str(shipped_model.weights)) is m
    pre = shipped.get("mnist-class", {}) if is_shipped else {}
    if not is_shipped and shipped.get("mnist-class"):
        out.notes.append("the precomputed column is empty: the scored model is not the shipped mnist-class")
    live_n = f"live: {live.get('n_samples')} samples, CFG 5, {b.score_steps} steps"
    pre_n = (
        f"precomputed: {_find(pre, 'n_samples') or '?'} samples, {_find(pre, 'steps') or 'all'} steps"
        if pre
        else "precomputed: none shipped"
    )
    ana = pre.get("anagram", {}) if isinstance(pre, dict) else {}
    out.table = [
        ["score", live_n, pre_n],
        [
            "conditional accuracy (CFG 5)",
            _pct(live.get("conditional_accuracy")),
            _pct(_find(pre, "conditional_accuracy")),
        ],
        ["Frechet distance, samples vs test", _num(live.get("frechet_distance")), _num(_find(pre, "frechet_distance"))],
        [
            "Frechet distance, train vs test (same N)",
            _num(live.get("frechet_distance_train_vs_test")),
            _num(_find(pre, "frechet_distance_train_vs_test")),
        ],
        [
            f"anagram success, rot180 ({a['n_pairs']} ordered pairs live)",
            f"{_pct(a['anagram_success'])} (upright {_pct(a['anagram_first'])}, rotated {_pct(a['anagram_second'])})",
            _pct(_find(ana, "anagram_success")) if ana else _pct(_find(pre, "anagram_success")),
        ],
        ["MNIST classifier test accuracy", _pct(classifiers.get("mnist")), "(from its JSON)"],
        ["Fashion-MNIST classifier test accuracy", _pct(classifiers.get("fashion-mnist")), "(from its JSON)"],
    ]
    for name, sc in shipped.items():
        if name != "mnist-class":
            out.table.append([f"{name}: conditional accuracy", "", _pct(_find(sc, "conditional_accuracy"))])
    out.caption = (
        "Scores of the MNIST class DDPM with the project's classifier: conditional accuracy (samples classified as "
        "the class asked for), Frechet distance in the classifier's penultimate features next to the same distance "
        "between the train and test sets, and anagram success (upright classified as prompt 1 AND rotated as "
        "prompt 2). 'live' is recomputed now on a small sample; 'precomputed' is read from the shipped JSON."
    )
    out.settings = {
        "model": m.name,
        "live samples per class": b.score_per_class,
        "live steps": f"{b.score_steps} evenly spaced of T = {m.schedule.num_steps}",
        "anagram pairs": len(pairs),
        "classifier": f"{data}-classifier.safetensors",
    }


# -- the sections, in report order -----------------------------------------------------------------------------------
SECTIONS: list[Section] = [
    Section("A0", "Sampling", "A", sec_a0),
    Section("A1.1", "Forward process", "A", sec_a1_1),
    Section("A1.2", "Classical denoising (blur)", "A", sec_a1_2),
    Section("A1.3", "One-step denoising", "A", sec_a1_3),
    Section("A1.4", "Iterative denoising", "A", sec_a1_4),
    Section("A1.5", "Sampling from noise", "A", sec_a1_5),
    Section("A1.6", "Classifier-free guidance", "A", sec_a1_6),
    Section("A1.7", "SDEdit (image-to-image)", "A", sec_a1_7),
    Section("A1.7.2", "Inpainting", "A", sec_a1_7_2),
    Section("A1.7.3", "Conditional image-to-image", "A", sec_a1_7_3),
    Section("A1.8", "Visual anagrams", "A", sec_a1_8),
    Section("A1.9", "Hybrid images", "A", sec_a1_9),
    Section("B1", "Single-step denoising UNet", "B", sec_b1),
    Section("B2", "Time-conditioned DDPM", "B", sec_b2),
    Section("B2.4", "Class-conditioned DDPM", "B", sec_b2_4),
    Section("B3", "Flow matching", "B", sec_b3),
    Section("B-fashion", "Fashion-MNIST class DDPM", "B", sec_fashion),
    Section("scores", "Scores", "S", sec_scores),
]
SECTION_IDS = [s.id for s in SECTIONS]


def run_section(ctx: Context, section: Section) -> SectionOut:
    out = SectionOut(seed=ctx.seed)
    start = time.perf_counter()
    try:
        with torch.no_grad():
            section.run(ctx, out)
    except MissingError as e:
        out.status = "missing"
        out.notes.append(str(e))
    except DiffusionLabError as e:
        out.status = "missing"
        out.notes.append(f"not run: {e}")
    except Exception as e:  # noqa: BLE001 - one failing section must not lose the whole report
        out.status = "error"
        out.notes.append(f"failed: {type(e).__name__}: {e}")
        traceback.print_exc(file=sys.stderr)
    out.seconds = time.perf_counter() - start
    return out


# -- --train -----------------------------------------------------------------------------------------------------------
def train_all(
    out_dir: Path,
    ctx: Context,
    overrides: dict | None = None,
    names: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[dict[str, Path], SectionOut]:
    """Retrain the Part B models with the course recipes (`overrides` for quick runs) into <out>/runs/<name>.
    A run already there is continued (resumed) to its recipe's length."""
    from diffusionlab.partb import epoch_figures
    from diffusionlab.training import open_run, recipe

    report = SectionOut(seed=ctx.seed)
    start = time.perf_counter()
    runs: dict[str, Path] = {}
    rows = [["model", "run directory", "epochs", "steps", "last-epoch loss", "seconds"]]
    for name in names or PARTB_MODELS:
        kind, objective, data = PARTB_MODELS[name]
        split = ctx.split(data, "train")
        run_dir = out_dir / "runs" / name
        if split is None:
            report.notes.append(f"{name}: no {data} train data in --data-dir or the cache; not trained")
            continue
        config = recipe(kind, objective, data=data, seed=ctx.seed, **(overrides or {}))
        test = ctx.split(data, "test")
        hook = None
        if test is not None:
            test_images = test.images[:8].float() / 255.0

            def hook(event, _t=test_images, _final=config.epochs) -> None:
                epoch_figures(event, _t.to(event.model.device), _final)

        resume = (run_dir / "model.safetensors").exists()
        trainer = open_run(
            config,
            run_dir,
            resume,
            device=ctx.device,
            data_dir=ctx.data_dir_for(data),
            on_epoch_end=hook,
            progress=progress,
            command=f"diffusionlab reproduce --train (recipe {kind} {objective} {data})",
        )
        summary = trainer.run(split)
        runs[name] = run_dir
        loss = summary["loss"]
        rows.append(
            [
                name,
                str(run_dir.relative_to(out_dir)),
                str(summary["epoch"]),
                str(summary["step"]),
                f"{loss:.5f}" if loss is not None else "n/a",
                f"{summary['seconds']:.1f}",
            ]
        )
    report.table = rows
    report.caption = "The Part B models retrained with the project's trainer and the course recipes (--train)."
    report.settings = {"overrides": overrides or "none (the course recipes)", "device": str(ctx.device)}
    report.seconds = time.perf_counter() - start
    return runs, report


# -- HTML ---------------------------------------------------------------------------------------------------------------
CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
nav ol{columns:2} .id{font-family:monospace;background:#eef;padding:0 .3em;border-radius:3px}
figure{margin:1em 0;display:inline-block;vertical-align:top;max-width:100%}
figure img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}
figcaption{font-size:.9em;color:#555}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;
vertical-align:top} th{background:#f4f4f4}
.settings td:first-child{color:#555;white-space:nowrap} .meta{color:#666;font-size:.9em}
.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.3em .6em;margin:.4em 0}
.status-error .note{background:#fde8e8;border-color:#d33} .status-missing h2{color:#a60}
code{background:#f4f4f4;padding:0 .2em}
"""


def _e(s: Any) -> str:
    return html.escape(str(s))


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(show_prompt(x) if isinstance(x, str) else str(x) for x in v)
    return str(v)


def render_html(
    sections: list[tuple[Section, SectionOut]], meta: dict[str, Any], training: SectionOut | None = None
) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>diffusionlab report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>diffusionlab: the course project, reproduced</h1>",
        f'<p class="meta">{_e(meta["command"])}<br>Part A model: {_e(meta["model"])} · seed {meta["seed"]} · '
        f"device {_e(meta['device'])} ({_e(meta['threads'])} threads) · {_e(meta['budget'])} budget · "
        f"total {meta['seconds']:.1f} s · {_e(meta['created'])} · diffusionlab {_e(meta['version'])}, "
        f"torch {_e(meta['torch'])}, Python {_e(meta['python'])}</p>",
        "<nav><h3>Contents</h3><ol>",
    ]
    entries = ([("training", "Training (--train)", training)] if training else []) + [
        (s.id, s.title, o) for s, o in sections
    ]
    for sid, title, o in entries:
        flag = "" if o.status == "ok" else f" ({o.status})"
        parts.append(
            f'<li><a href="#{_e(sid)}"><span class="id">{_e(sid)}</span> {_e(title)}</a>{flag} '
            f'<span class="meta">{o.seconds:.1f} s</span></li>'
        )
    parts.append("</ol></nav>")
    heads = {"A": "Part A — diffusion as an image tool", "B": "Part B — diffusion from scratch", "S": "Scores"}
    last_part = None
    for sid, title, o in entries:
        part = next((s.part for s, _ in sections if s.id == sid), "B")
        if part != last_part and sid != "training":
            if part != "S":
                parts.append(f"<h1>{_e(heads[part])}</h1>")
            last_part = part
        parts.append(f'<section id="{_e(sid)}" data-section="{_e(sid)}" class="status-{o.status}">')
        parts.append(f'<h2><span class="id">{_e(sid)}</span> {_e(title)}</h2>')
        parts.append(f'<p class="meta">seed {o.seed} · {o.seconds:.1f} s · {o.status}</p>')
        if o.caption:
            parts.append(f"<p>{_e(o.caption)}</p>")
        for note in o.notes:
            parts.append(f'<p class="note">{_e(note)}</p>')
        if o.table:
            parts.append("<table>")
            parts.append("<tr>" + "".join(f"<th>{_e(c)}</th>" for c in o.table[0]) + "</tr>")
            for row in o.table[1:]:
                parts.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
            parts.append("</table>")
        for f in o.figures:
            parts.append(
                f'<figure><img src="{_e(f.path)}" alt="{_e(sid)}: {_e(f.caption or f.path)}" loading="eager">'
                f"<figcaption>{_e(f.caption)}</figcaption></figure>"
            )
        if o.settings:
            parts.append('<table class="settings">')
            for k, v in o.settings.items():
                parts.append(f"<tr><td>{_e(k)}</td><td>{_e(_value(v))}</td></tr>")
            parts.append("</table>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- the entry point ------------------------------------------------------------------------------------------------------
def reproduce(
    out_dir: str | Path = "report",
    model: str = "mnist",
    train: bool = False,
    force: bool = False,
    data_dir: str | Path | None = None,
    seed: int = 0,
    device: str = "auto",
    quick: bool = False,
    weights: str | Path | None = None,
    budget: Budget | None = None,
    train_overrides: dict | None = None,
    sections: Sequence[str] | None = None,
    model_kwargs: dict | None = None,
    download: bool = False,
    threads: int | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Write <out_dir>/index.html, figures/ and scores.json. Returns a summary (sections, seconds, statuses).

    weights: the shipped-weights folder (default $DIFFUSIONLAB_WEIGHTS_DIR or the package's). budget overrides
    quick. train_overrides: TrainConfig fields for --train (tests use tiny settings). sections: only these ids.
    """
    unknown = set(sections or []) - set(SECTION_IDS)
    if unknown:
        raise DiffusionLabError(
            f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTION_IDS)}"
        )
    out = Path(out_dir)
    index = out / "index.html"
    if index.exists() and not force:
        raise DiffusionLabError(f"{index} already exists; pass --force to replace the report, or choose another --out")
    if out.exists() and not out.is_dir():
        raise DiffusionLabError(f"--out {out} is a file; give a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    if _on_cpu(device):
        torch.set_num_threads(threads or free_cores())
    elif threads:
        torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        bud = budget or (QUICK if quick else FULL)
        ctx = Context(
            out, model, seed, device, Path(data_dir) if data_dir else None, weights, bud, None, model_kwargs, download
        )
        chosen = [s for s in SECTIONS if sections is None or s.id in sections]
        training = None
        if train:
            ctx.runs, training = train_all(out, ctx, train_overrides, progress=progress)
        results: list[tuple[Section, SectionOut]] = []
        bar = tqdm(chosen, desc="reproduce", unit="section", disable=not progress)
        for section in bar:
            bar.set_postfix_str(section.id)
            results.append((section, run_section(ctx, section)))
        bar.close()
        seconds = time.perf_counter() - start
        from diffusionlab import __version__

        meta = {
            "command": command or shlex.join(["diffusionlab", "reproduce", "--out", str(out), "--model", model]),
            "model": model,
            "seed": seed,
            "device": str(ctx.device),
            "threads": torch.get_num_threads(),
            "budget": "quick" if bud == QUICK else ("full" if bud == FULL else "custom"),
            "seconds": seconds,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "version": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
        summary_sections = [
            {
                "id": s.id,
                "title": s.title,
                "status": o.status,
                "seconds": round(o.seconds, 2),
                "notes": o.notes,
                "figures": [f.path for f in o.figures],
            }
            for s, o in results
        ]
        scores = {**ctx.scores, "sections": summary_sections, "meta": meta, "budget": asdict(bud)}
        if training is not None:
            scores["training"] = training.table
        from diffusionlab.checkpoint import atomic_write_bytes, atomic_write_json

        atomic_write_json(out / "scores.json", _jsonable(scores))
        atomic_write_bytes(index, render_html(results, meta, training).encode())
        return {"index": index, "seconds": seconds, "sections": summary_sections, "scores": ctx.scores}
    finally:
        torch.set_num_threads(threads_before)


def _on_cpu(device: str) -> bool:
    return str(device) == "cpu" or (str(device) == "auto" and not torch.cuda.is_available())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
