"""`diffusionlab evaluate`: scores of a class-conditional model, an unconditional one or a denoiser (the scoring
classifier is trained by `diffusionlab train-classifier`, commands/train_classifier.py)."""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from diffusionlab.checks import MAX_SCORED_SAMPLES, check_batch, check_count, check_output_file, write_together
from diffusionlab.commands.common import (
    ClassifierOpt,
    DeviceOpt,
    EtaOpt,
    ForceOpt,
    ModelOpt,
    SamplerOpt,
    SeedOpt,
    StepsOpt,
    VarianceOpt,
    cfg_callback,
    n_callback,
    open_model,
    wrote,
)
from diffusionlab.commands.score_table import format_table, frechet_rows
from diffusionlab.errors import DiffusionLabError
from diffusionlab.steps import choose_step_rule

DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder with the four IDX files (.gz or raw), or a folder of images (its held-out share); else the cache.",
    ),
]


@dataclasses.dataclass(frozen=True)
class ScoringOptions:
    """What scores a model's samples (evaluate, choose-guidance): --data-dir (the test split for the Frechet
    distance, the train split for its floor) and --classifier."""

    data_dir: DataDirOpt = None
    classifier: ClassifierOpt = None

    def load(self, m) -> tuple:
        """(classifier, test split, train split) for model m: scoring_data."""
        return scoring_data(m, self.classifier, self.data_dir)

    def classifier_name(self, data: str) -> str:
        """The classifier as the scores name it."""
        return str(self.classifier or f"shipped {data}-classifier")


AnagramOpt = Annotated[
    str | None,
    typer.Option(
        "--anagram",
        help="Also score visual anagrams with this view over all ordered class pairs and write their per-pair "
        "map PNG next to --out. Example: --anagram rot180 --pair-n 2",
    ),
]
DEFAULT_CFG = 5.0
HybridOpt = Annotated[
    bool,
    typer.Option(
        "--hybrid",
        help="Also score hybrid images over all ordered class pairs and write their per-pair map PNG next to "
        "--out. Example: --hybrid --pair-n 2",
    ),
]


def evaluate(
    model: ModelOpt = "mnist",
    n: Annotated[
        int | None,
        typer.Option(
            "-n",
            "--n",
            help="Samples per class (default 100). Unconditional (time) model: samples (default 1000). Denoiser: "
            "test images (default all); pure-noise: draws of z (256).",
            callback=n_callback,
        ),
    ] = None,
    cfg: Annotated[
        float | None,
        typer.Option(
            "--cfg",
            help="Classifier-free guidance scale of the samples (default: the model's own, measured and stored with "
            "it by choose-guidance, else 5, as sample uses); the anagram/hybrid pair scores default to 5.",
            callback=cfg_callback,
        ),
    ] = None,
    steps: StepsOpt = None,
    seed: SeedOpt = 0,
    scoring: ScoringOptions = ScoringOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
    anagram: AnagramOpt = None,
    hybrid: HybridOpt = False,
    pair_n: Annotated[
        int,
        typer.Option(
            "--pair-n",
            help="Anagram/hybrid images per ordered class pair.",
            callback=lambda v: check_count(v, "--pair-n"),
        ),
    ] = 1,
    out: Annotated[Path, typer.Option("--out", help="JSON file for the scores.")] = Path("scores.json"),
    force: ForceOpt = False,
    device: DeviceOpt = "auto",
    sampler: SamplerOpt = None,
    variance: VarianceOpt = None,
    eta: EtaOpt = None,
    sigma: Annotated[
        float | None,
        typer.Option(
            "--sigma",
            help="Denoisers only: noise level of the test inputs (default: the level it was trained at). "
            "Example: --model mnist-denoiser --sigma 0.5",
        ),
    ] = None,
) -> None:
    """Score a class-conditional model: conditional accuracy of its samples (classified as the class asked for),
    the background std of the raw samples, and their Frechet distance to the test set in the classifier's
    features, next to the train-vs-test reference at the same N. --anagram/--hybrid also write a per-pair success
    map (rows: upright/far class, columns: viewed/near class) next to the JSON, e.g. scores-anagram-rot180.png. Without the data set (no --data-dir and nothing
    in the cache) it scores what it can offline and says that the Frechet distance needs --data-dir.

    Example: diffusionlab evaluate --model mnist -n 100 --cfg 5 --steps 30 --out scores.json
    Example: diffusionlab evaluate -n 10 --anagram rot180 --hybrid --pair-n 2 --out pairs.json

    A single-step denoiser (B1) is scored by its MSE on the test set at --sigma, next to the noisy input's; a
    pure-noise denoiser (B1.2.3) by the distance of its outputs to the mean training digit.

    Example: diffusionlab evaluate --model mnist-denoiser --data-dir data/mnist --out denoiser.json

    An unconditional (time-conditioned) model is scored by its samples' Frechet distance, background std and how
    the classifier spreads them over the classes (against the test set's labels): a model that drops digits shows.

    Example: diffusionlab evaluate --model mnist-time -n 1000 --steps 30 --data-dir data/mnist --out time.json
    """
    from diffusionlab.data import dataset_info
    from diffusionlab.evaluation.evaluate import check_unconditional_count, evaluate_model, evaluate_unconditional

    out = check_output_file(out, force)
    maps = {k: check_output_file(p, force) for k, p in map_paths(out, anagram, hybrid).items()}
    step_rule = choose_step_rule(sampler, variance, eta)
    m = open_scored_model(model, device)
    if m.kind.supports("denoise_once"):  # a single-step denoiser: its own scores
        class_only = {"--anagram": anagram, "--hybrid": hybrid, "--classifier": scoring.classifier, "--steps": steps}
        given = [k for k, v in {**class_only, "--sampler": sampler, "--variance": variance, "--eta": eta}.items() if v]
        if given:
            raise DiffusionLabError(f"{given[0]} scores class-conditioned samples; {m.name} is a single-step denoiser")
        from diffusionlab.commands.evaluate_denoiser import score_denoiser

        scores = score_denoiser(m, model, n, sigma, seed, scoring.data_dir)
        return write_scores(out, scores)
    if sigma is not None:
        raise DiffusionLabError("--sigma scores a single-step denoiser; pass --model mnist-denoiser or a denoiser run")
    unconditional = not m.conditioned
    if unconditional:
        from diffusionlab.commands import evaluate_unconditional as uncond

        uncond.check_unconditional_options(m.name, cfg, anagram, hybrid)
        n = n or uncond.DEFAULT_SAMPLES
        check_count(n, "-n", MAX_SCORED_SAMPLES, " (all samples are kept for the scores)")
        check_unconditional_count(n)  # before the data are read
    else:
        n = n or 100
        check_inputs(m, n, pair_n if anagram or hybrid else 0, anagram)
    data = m.config.get("data", "mnist")
    clf, test, train = scoring.load(m)
    rule = {"--sampler": sampler, "--variance": variance, "--eta": eta}
    if unconditional:
        scores = evaluate_unconditional(m, clf, n, steps, seed, test, train, sampler=step_rule)
        scores["classifier"] = scoring.classifier_name(data)
        scores["command"] = command_line(model, n, None, steps, seed, rule, None, False, 0)
        print(uncond.format_unconditional_scores(scores, m.class_names or dataset_info(data).class_names))
        return write_scores(out, scores)
    from diffusionlab.tools.inputs import cfg_scale

    scale = cfg_scale(m, cfg)  # the tools' one rule: the given scale, else the model's default
    scores = evaluate_model(m, clf, n, scale, steps, seed, test, train, sampler=step_rule)
    scores.update(pair_scores(m, clf, anagram, hybrid, pair_n, cfg if cfg is not None else DEFAULT_CFG, seed))
    scores["classifier"] = scoring.classifier_name(data)
    scores["command"] = command_line(model, n, cfg, steps, seed, rule, anagram, hybrid, pair_n)
    print(format_scores(scores, m.class_names))
    write_scores(out, scores, map_writers(scores, maps, m.class_names))


def command_line(model, n, cfg, steps, seed, rule: dict, anagram, hybrid: bool, pair_n: int) -> str:
    """The evaluate command that makes these scores (stored in the JSON)."""
    return shlex.join(
        ["diffusionlab", "evaluate", "--model", str(model), "-n", str(n)]
        + (["--cfg", str(cfg)] if cfg is not None else [])
        + (["--steps", str(steps)] if steps else [])
        + [part for k, v in rule.items() if v is not None for part in (k, str(v))]
        + ["--seed", str(seed)]
        + (["--anagram", anagram] if anagram else [])
        + (["--hybrid"] if hybrid else [])
        + (["--pair-n", str(pair_n)] if anagram or hybrid else [])
    )


def open_scored_model(model: str, device: str):
    """The model to score: a class-conditioned or unconditional (time) model of ours or a single-step denoiser
    (DeepFloyd IF has no score here)."""
    from diffusionlab.backends import is_if_spec

    if is_if_spec(model):
        raise DiffusionLabError(
            "evaluate scores our class-conditioned MNIST-like models; DeepFloyd IF has no classifier"
        )
    m = open_model(model, device)
    m.kind.require(m, "evaluate")  # our class, time and denoiser models
    return m


def scoring_data(m, classifier: str | None, data_dir):
    """The classifier that scores the model's samples (--classifier, else the shipped one of its data; one of
    other data is refused in one line) and the data's test and train splits: (classifier, test, train)."""
    from diffusionlab.evaluation.classifier import load_classifier

    data = m.config.get("data", "mnist")
    clf = load_classifier(classifier or data, m.device)
    if clf.data is not None and clf.data != data:
        raise DiffusionLabError(
            f"the classifier was trained on {clf.data} but the model generates {data}; pass a {data} --classifier"
        )
    return (clf, *load_splits(data, data_dir, m.image_shape[-1]))


def load_splits(data: str, data_dir: Path | None, image_size: int | None = None):
    """(test, train) splits, or (None, None) without --data-dir and nothing in the cache. An image folder's test
    split is its held-out share, at the model's image_size."""
    from diffusionlab.imagefolder import load_any_split

    try:  # given a folder, its files must be good; without one, never download: score what needs no data
        test = load_any_split(data, "test", data_dir, data_dir is not None, image_size)
        train = load_any_split(data, "train", data_dir, data_dir is not None, image_size)
    except DiffusionLabError:
        if data_dir is not None:
            raise
        print(
            f"note: no {data} data set here, so no Frechet distance; pass --data-dir with its four IDX files "
            "(or, for a model trained on a folder of images, that folder)"
        )
        return None, None
    return test, train


def pair_scores(m, clf, anagram: str | None, hybrid: bool, pair_n: int, cfg: float, seed: int) -> dict:
    """The --anagram and --hybrid scores, per pair too (their images are not kept in the JSON)."""
    from diffusionlab.evaluation.pairs import evaluate_anagrams, evaluate_hybrids

    scores = {}
    if anagram:
        scores["anagram"] = evaluate_anagrams(m, clf, anagram, pair_n, cfg, seed)
        scores["anagram"].pop("images")
    if hybrid:
        scores["hybrid"] = evaluate_hybrids(m, clf, pair_n, cfg, seed)
        scores["hybrid"].pop("images")
    return scores


def map_paths(out: Path, anagram: str | None, hybrid: bool) -> dict[str, Path]:
    """Where the per-pair score maps go: next to the JSON, scores.json -> scores-anagram-rot180.png."""
    paths = {}
    if anagram:
        paths["anagram"] = out.with_name(f"{out.stem}-anagram-{anagram.replace(':', '-')}.png")
    if hybrid:
        paths["hybrid"] = out.with_name(f"{out.stem}-hybrid.png")
    return paths


def write_scores(out: Path, scores: dict, maps: dict | None = None) -> None:
    """The scores JSON and the pair maps, all or none (write_together): a full disk is one line, no traceback."""
    json_bytes = (json.dumps(scores, indent=2) + "\n").encode()
    write_together({out: lambda path: path.write_bytes(json_bytes), **(maps or {})})
    wrote(out, *(maps or {}))


def map_writers(scores: dict, paths: dict[str, Path], class_names) -> dict[Path, Callable[[Path], Any]]:
    """The writers of the 10x10 per-pair success heatmaps of the --anagram and --hybrid scores."""
    from diffusionlab.evaluation.metrics import score_map
    from diffusionlab.figures.grid import save_png

    names = list(class_names or [str(i) for i in range(10)])
    writers = {}
    for kind, path in paths.items():
        s = scores[kind]
        if kind == "anagram":
            title = f"anagram success per pair, view {s['view']}: {100 * s['anagram_success']:.0f} % overall"
            img = score_map(s["per_pair"], names, title, "upright", "viewed")
        else:
            title = f"hybrid success per pair: {100 * s['hybrid_success']:.0f} % overall"
            img = score_map(s["per_pair"], names, title, "far (low-pass)", "near (high-pass)")
        settings = {"command": scores.get("command"), "kind": kind}
        writers[path] = lambda staged, img=img, settings=settings: save_png(img, staged, settings)
    return writers


def format_scores(scores: dict[str, Any], class_names: Sequence[str] | None = None) -> str:
    """The score table `diffusionlab evaluate` prints."""
    rows = [
        ("model", str(scores["model"])),
        (
            "samples",
            f"{scores['n_samples']} ({scores['n_per_class']} per class), CFG {scores['cfg_scale']}, "
            f"{scores['sampler']} {scores['steps'] or 'all'} steps, seed {scores['seed']}",
        ),
        ("conditional accuracy", f"{100 * scores['conditional_accuracy']:.2f} %"),
        ("background std (raw samples)", f"{scores['background_std']:.4f}"),
        *frechet_rows(scores),
    ]
    if scores.get("classifier_test_accuracy") is not None:
        rows.append(("classifier test accuracy", f"{100 * scores['classifier_test_accuracy']:.2f} %"))
    names = list(class_names or [str(i) for i in range(len(scores["per_class_accuracy"]))])
    per = ", ".join(f"{names[i]} {100 * a:.0f}%" for i, a in enumerate(scores["per_class_accuracy"]) if a is not None)
    rows.append(("per class", per))
    rows += pair_rows(scores)
    return format_table(rows)


def pair_rows(scores: dict[str, Any]) -> list[tuple[str, str]]:
    """The anagram and hybrid rows of the score table, when they were scored."""
    rows = []
    if "anagram" in scores:
        a = scores["anagram"]
        rows.append(
            (
                f"anagram success ({a['view']}, {a['n_pairs']} pairs)",
                f"{100 * a['anagram_success']:.2f} % (upright {100 * a['anagram_first']:.1f} %, "
                f"viewed {100 * a['anagram_second']:.1f} %)",
            )
        )
    if "hybrid" in scores:
        h = scores["hybrid"]
        rows.append(
            (
                f"hybrid success ({h['n_pairs']} pairs)",
                f"{100 * h['hybrid_success']:.2f} % (far {100 * h['hybrid_far']:.1f} %, near {100 * h['hybrid_near']:.1f} %)",
            )
        )
    return rows


def check_inputs(m, n: int, pair_n: int, anagram: str | None) -> None:
    """What evaluate can check before any sampling: how many samples, the pair batch, the anagram view."""
    k = m.num_classes
    check_count(n, "-n", MAX_SCORED_SAMPLES // k, f" (samples per class: all {k} x n are kept for the scores)")
    if pair_n:
        check_batch(pair_n * k * (k - 1), m.image_shape, f"--pair-n x {k * (k - 1)} class pairs")
    if anagram:
        from diffusionlab.views import get_view

        get_view(anagram, m.image_shape)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
