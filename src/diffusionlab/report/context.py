"""The report's shared pieces: constants, the Budget, what a section produces, and the Context (data, models,
figure paths) every section is run with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_kinds import DDPM
from diffusionlab.model_protocol import generator_for
from diffusionlab.shipped_models import SHIPPED_MODELS

WEIGHTS_ENV = "DIFFUSIONLAB_WEIGHTS_DIR"

# shipped name -> file stem in the weights folder (and the run directory name with --train)
PARTB_MODELS = {
    "mnist-denoiser": ("denoiser", "ddpm", "mnist"),
    "mnist-time": ("time", "ddpm", "mnist"),
    "mnist-class": ("class", "ddpm", "mnist"),
    "mnist-flow": ("class", "flow", "mnist"),
    "mnist-time-flow": ("time", "flow", "mnist"),
    "fashion-mnist-class": ("class", "ddpm", "fashion-mnist"),
}
SHIPPED_ALIASES = {name: e.file for name, e in SHIPPED_MODELS.items() if name != e.file}  # "mnist": "mnist-class"

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
    # B2.4 final model (None = every step T-1..0, Algorithm B.2). 30: the samplers' default; DDIM at 100 steps
    # scored the same (FD 2.62 vs 2.65 at N = 1000, docs/sampling.md) for 3.3x the time
    final_class_steps: int | None = 30
    snapshot_steps: int = 30  # B2.4 snapshots, Fashion-MNIST, B2: evenly spaced DDPM steps
    time_n: int = 20
    time_steps: int | None = 30
    flow_steps: int = 30  # B3 Euler steps (the course: 300 for the class model; 30 = docs/models.md's scores)
    score_per_class: int = 10
    score_steps: int = 30
    anagram_pairs: int | None = None  # None: all ordered digit pairs (90)
    digits: int = 6  # test digits in the B1 figures


FULL = Budget()
QUICK = Budget(  # --quick, a fast look; a line each: Part A, Part B, the scores
    a0_counts=(5, 10), if_a0_counts=(10, 20), a0_per_prompt=2, pair_n=1,
    per_class=1, final_class_steps=20, snapshot_steps=10, time_n=10, time_steps=10, flow_steps=10, digits=3,
    score_per_class=2, score_steps=10, anagram_pairs=10,
)  # fmt: skip


# -- what a section produces -------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One cell of a grid figure: its label and, for an illusion, whether the classifier passed it (None: not
    scored)."""

    label: str
    passed: bool | None = None


@dataclass
class Figure:
    path: str  # relative to the report folder
    caption: str = ""
    # per-cell labels of a grid, in the grid's reading order; shown under the image as a table of
    # `cells_per_row` columns, a passed cell green and a failed one red (e.g. each anagram's classifier verdict)
    cells: list[Cell] = field(default_factory=list)
    cells_per_row: int | None = None


@dataclass
class SectionOut:
    figures: list[Figure] = field(default_factory=list)
    caption: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)  # how the model was made: folded away in the HTML
    notes: list[str] = field(default_factory=list)
    inputs: str = ""  # where the section's test images came from, shown with the caption
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
    """Where the shipped weights are: the argument, else backends.shipped_weights_dir()
    ($DIFFUSIONLAB_WEIGHTS_DIR or the package's weights/ folder)."""
    from diffusionlab.backends import shipped_weights_dir

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
        progress: bool = False,
    ) -> None:
        from diffusionlab.model_protocol import resolve_device

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
        self.progress = progress  # a line per long step of a section, and the samplers' own bars
        self._models: dict[str, Any] = {}
        self._splits: dict[tuple[str, str], Any] = {}
        self._test_digits: dict[tuple[str, int], tuple[Tensor, str]] = {}
        self._part_a: Any = None
        self.scores: dict[str, Any] = {}

    # -- files --------------------------------------------------------------------------------------------------
    def fig(self, section_id: str, name: str, ext: str = "png") -> Path:
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        return self.fig_dir / f"{section_id.replace('.', '_')}_{name}.{ext}"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()

    def say(self, section_id: str, what: str) -> None:
        """One progress line above the report's bar (a section's long step: the terminal is never silent long)."""
        if self.progress:
            from tqdm.auto import tqdm

            from diffusionlab.progress import progress_enabled

            if progress_enabled():
                tqdm.write(f"  {section_id}: {what}")

    def generator(self, offset: int = 0) -> torch.Generator:
        return generator_for(self.seed + offset)

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
        from diffusionlab.course_model import CourseModel

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
                from diffusionlab.backends import load_model

                self._part_a = load_model(spec, str(self.device), **self.model_kwargs)
        return self._part_a

    def score_model(self):
        """The class DDPM scored: --model when it is a class DDPM of ours on MNIST, else MNIST's class DDPM."""
        try:
            m = self.part_a_model()
            if m.kind is DDPM and m.conditioned and m.data == "mnist":  # our class DDPM on MNIST
                return m
        except DiffusionLabError:
            pass
        return self.partb_model("mnist-class")

    def classifier(self, data: str):
        from diffusionlab.evaluation.classifier import load_classifier

        path = self.weights / f"{data}-classifier.safetensors"
        if not path.is_file():
            raise MissingError(f"{path.name} is not in {path.parent}; train it with `diffusionlab train-classifier`")
        return load_classifier(path, self.device)

    def test_digits(self, data: str, k: int) -> tuple[Tensor, str]:
        """The first k genuine test images of `data`, uint8 (k, 1, 28, 28), and one line naming their source:
        --data-dir or the cache (filled first only with --download), else the sample shipped in the package."""
        from diffusionlab.testdigits import first_test_images

        key = (data, k)
        if key not in self._test_digits:
            if self.download:
                self.split(data, "test")  # downloads into the cache, where testdigits finds it
            try:
                images, _, source = first_test_images(data, k, self.data_dir_for(data))
            except DiffusionLabError as e:  # --data-dir without this data's test files, a corrupt cached file
                images, _, source = first_test_images(data, k, sample_because=str(e))
            if all(source != seen for _, seen in self._test_digits.values()):
                from tqdm.auto import tqdm

                tqdm.write(f"test images: {source}")  # once per source, above the progress bar
            self._test_digits[key] = (images, source)
        return self._test_digits[key]

    def digits(self, k: int, out: SectionOut, data: str = "mnist") -> Tensor:
        """k test images in [0, 1] (from the data set, else the shipped sample); out says which."""
        from diffusionlab.data import to_float

        images, source = self.test_digits(data, k)
        out.inputs = source
        return to_float(images).to(self.device)


class MissingError(DiffusionLabError):
    """Something the section needs is not in this install (weights, data): the section says so."""
