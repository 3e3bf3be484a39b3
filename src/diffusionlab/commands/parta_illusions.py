"""Part A's illusions: anagram (2-4 views) and hybrid, with verified best-of-K. Outputs as the other Part A
commands (parta): one labelled grid PNG (--out) and, with --save-all DIR, every single image."""

from __future__ import annotations

from diffusionlab.commands import illusion_options as ill
from diffusionlab.commands.common import ClassifierOpt, SamplingOptions
from diffusionlab.commands.parta import NOpt, OutOpt, SaveAllOpt, check_outputs, finish
from diffusionlab.errors import DiffusionLabError


def anagram(
    prompt: ill.PromptsOpt,
    view: ill.ViewsOpt = None,
    n: NOpt = 4,
    scale: ill.ScaleOpt = None,
    combine: ill.CombineOpt = None,
    best_of: ill.BestOfOpt = "1",
    runner_ups: ill.RunnerUpsOpt = False,
    weights: ill.WeightsOpt = None,
    balance: ill.BalanceOpt = None,
    classifier: ClassifierOpt = None,
    out: OutOpt = None,
    save_all: SaveAllOpt = None,
    opts: SamplingOptions = SamplingOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
) -> None:
    """Visual anagrams (A1.8): images that show the first prompt upright and each later one through its view.

    eps = mean over views of view^-1(CFG(view(x_t), p)); all -n images, views and branches in one batch.

    Example: diffusionlab anagram --prompt 6 --prompt 9 --view rot180 -n 8 --out six_nine.png
    Example: diffusionlab anagram -p 6 -p 2 -p 3 --view rot90 --view rot180 --best-of auto
    """
    from diffusionlab import tools
    from diffusionlab.tools.illusions import anagram_readings

    prompt, view = anagram_readings(prompt, view)
    ill.check_anagram(opts.model, best_of, weights, len(prompt), balance)
    path = check_outputs(out, "anagram.png", save_all, opts.force)
    rule = opts.rule()  # a bad combination fails before the model loads
    m = opts.open()
    more = dict(best_of=best_of, runner_ups=runner_ups, weights=weights, combine=combine, balance=balance)
    result = tools.anagram(m, prompt, view, n, scale, opts.seed, **rule, **more, classifier=reader(classifier, m))
    finish(result, path, save_all, opts.force)
    say_readings(result.settings)


def hybrid(
    prompt: ill.HybridPromptsOpt,
    sigma: ill.SigmaOpt = None,
    kernel: ill.KernelOpt = None,
    n: NOpt = 4,
    scale: ill.ScaleOpt = None,
    far_scale: ill.FarScaleOpt = None,
    near_scale: ill.NearScaleOpt = None,
    lowpass: ill.LowpassOpt = None,
    balance: ill.HybridBalanceOpt = None,
    best_of: ill.BestOfOpt = "1",
    runner_ups: ill.RunnerUpsOpt = False,
    classifier: ClassifierOpt = None,
    out: OutOpt = None,
    save_all: SaveAllOpt = None,
    opts: SamplingOptions = SamplingOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
) -> None:
    """Hybrid images (A1.9): the first prompt seen from afar (low frequencies), the second up close (high).

    eps = lowpass(CFG(x_t, p_low)) + highpass(CFG(x_t, p_high)); the grid also shows each image low-passed.

    Example: diffusionlab hybrid --prompt 0 --prompt 1 -n 8 --best-of 8 --out hybrid.png
    """
    from diffusionlab import tools

    if len(prompt or []) != 2:
        raise DiffusionLabError(f"hybrid needs exactly two --prompt options (low, high), got {len(prompt or [])}")
    ill.check_hybrid(opts.model, best_of, balance)
    path = check_outputs(out, "hybrid.png", save_all, opts.force)
    rule = opts.rule()  # a bad combination fails before the model loads
    m = opts.open()
    more = dict(best_of=best_of, runner_ups=runner_ups, classifier=reader(classifier, m), balance=balance)
    more |= dict(far_scale=far_scale, near_scale=near_scale, lowpass=lowpass)
    result = tools.hybrid(m, prompt, n, kernel, sigma, scale, opts.seed, **rule, **more)
    finish(result, path, save_all, opts.force)
    say_readings(result.settings)


def reader(classifier: str | None, m):
    """--classifier: the classifier that reads the illusions (best-of, the readings, the balance), e.g. one trained
    on an image folder with train-classifier; None: the shipped ranker of the model's data."""
    from diffusionlab.evaluation.classifier import load_classifier

    return load_classifier(classifier, m.device) if classifier else None


def say_readings(settings: dict) -> None:
    """After the figure: how many images read as asked (and which reading failed), and how best-of auto ended.
    A failed illusion is said, not an error: the exit status stays 0."""
    if settings.get("best_of") == "auto":
        print(f"best-of auto: {settings['candidates_per_image']} candidates per image, {settings['stopped']}")
    print(settings["readings"])


def register(app) -> None:
    for fn in (anagram, hybrid):
        app.command(fn.__name__)(fn)
