"""The illusions' tabs' work: visual anagrams with 2-4 readings (A1.8) and hybrid images (A1.9), with verified
best-of-K, through the tool layer (`tools.anagram`, `tools.hybrid`). A mixin of app.handlers.Handlers."""

from __future__ import annotations

from typing import Any

from PIL import Image

from diffusionlab.app.inputs import as_float, as_int, seed_value, settings_text
from diffusionlab.app.pictures import to_picture
from diffusionlab.errors import DiffusionLabError

MAX_READINGS = 4  # tools.anagram: the first prompt upright, one view for each later one
MAX_BEST_OF = 16


def best_of_value(k: Any) -> int:
    return as_int(k, "best-of K (candidates per image, ranked by the classifier)", 1, MAX_BEST_OF)


def anagram_request(readings: Any, prompts: list[Any], views: list[Any]) -> tuple[list[str], list[str]]:
    """The anagram form -> (prompts, views) of `readings` readings: a prompt for each, a view for each after the
    first. One-line errors for a bad count, a missing prompt or view, an unknown view."""
    from diffusionlab.views import check_view_name

    count = as_int(readings, "number of readings (views)", 2, MAX_READINGS)
    ps = [str(p or "").strip() for p in prompts[:count]]
    vs = [str(v or "").strip() for v in views[: count - 1]]
    if len(ps) < count or not all(ps):
        missing = next((k + 1 for k, p in enumerate(ps) if not p), len(ps) + 1)
        raise DiffusionLabError(f"{count} readings need {count} prompts; prompt {missing} is empty")
    if len(vs) < count - 1 or not all(vs):
        missing = next((k + 2 for k, v in enumerate(vs) if not v), len(vs) + 2)
        raise DiffusionLabError(
            f"{count} readings need {count - 1} views (one per prompt after the first); view {missing} is empty"
        )
    return ps, [check_view_name(v) for v in vs]


def _probabilities(settings: dict[str, Any]) -> dict[str, str]:
    """The ranker's verdict on the kept images for the settings line: the summary (K of N read as asked, which
    reading failed), each image's reading probabilities, how best-of auto ended, and a known-failure warning."""
    probs = settings.get("reading_probabilities")
    out = {"readings": settings["readings"].removeprefix("readings: ")} if "readings" in settings else {}
    if probs:
        out["ranker"] = "; ".join("/".join(f"{p:.2f}" for p in image) for image in probs)
    if settings.get("best_of") == "auto":
        out["best of auto"] = f"{settings['candidates_per_image']} candidates per image, {settings['stopped']}"
    return out | ({"warning": settings["warning"].removeprefix("warning: ")} if "warning" in settings else {})


# the hybrid tab's low-pass: the model's measured one (ours: the far view's own filter) or a Gaussian
LOWPASS_CHOICES = ["the model's (measured)", "Gaussian (sigma, kernel)"]


class IllusionHandlers:
    """Anagram and hybrid handlers; needs Handlers' _run, _base, _n, out and registry."""

    def _candidates(self, n: Any, best_of: Any) -> tuple[int, int]:
        """n images and best-of K: n x K candidates, at most the limit of images a request."""
        n, k = self._n(n), best_of_value(best_of)
        if n * k > self.limits.max_images:
            raise DiffusionLabError(
                f"{n} images x best-of {k} is {n * k} candidates, more than the limit of {self.limits.max_images}"
            )
        return n, k

    # -- Anagram (A1.8) ------------------------------------------------------------------------------------------
    def anagram(
        self, model_value, readings, p1, p2, p3, p4, v2, v3, v4, n, scale, seed, best_of=1, weights="", balance=True
    ):
        from diffusionlab.tools.illusions import reading_weights

        prompts, views = anagram_request(readings, [p1, p2, p3, p4], [v2, v3, v4])
        weights = (weights or "").strip() or None
        reading_weights(weights, len(prompts))
        n, k = self._candidates(n, best_of)
        scale = as_float(scale, "CFG scale", 0.0, 50.0)
        seed = seed_value(seed)

        def work(model):
            from diffusionlab import tools

            # balance ticked: the tool's default (on where the model has a classifier); unticked: off
            steer = None if balance else False
            r = tools.anagram(model, prompts, views, n, scale, seed, best_of=k, weights=weights, balance=steer)
            return r.figure(), r.settings  # the tool's figure: each reading framed green (read) or red (not)

        figure, tool_settings = self._run(model_value, work)
        st = self._base(
            model_value, tool="anagram", prompts=" / ".join(prompts), views=", ".join(views), n=n, cfg=scale, seed=seed
        )
        st |= ({"best of": k} if k > 1 else {}) | ({"weights": weights} if weights else {})
        st |= {"reading balance": "on" if tool_settings.get("balance") else "off"}
        png = self.out.png(figure, st, "anagram")
        return png, settings_text({**st, **_probabilities(tool_settings)})

    # -- Hybrid (A1.9) -------------------------------------------------------------------------------------------
    def hybrid(self, model_value, low_prompt, high_prompt, sigma, kernel, n, scale, seed, best_of=1, lowpass=None):
        """lowpass: the tab's choice; its first (the model's measured low-pass) ignores sigma and kernel."""
        if lowpass == LOWPASS_CHOICES[0]:
            sigma = kernel = None
        n, k = self._candidates(n, best_of)
        sigma = None if sigma in (None, "") else as_float(sigma, "sigma", 0.1, 50.0)
        kernel = None if kernel in (None, "") else as_int(kernel, "kernel", 3, 99)
        if kernel is not None and kernel % 2 == 0:
            raise DiffusionLabError(f"kernel must be odd, got {kernel}")
        scale = as_float(scale, "CFG scale", 0.0, 50.0)
        seed = seed_value(seed)

        def work(model):
            from diffusionlab import tools

            r = tools.hybrid(model, [low_prompt or "", high_prompt or ""], n, kernel, sigma, scale, seed, best_of=k)
            return r.images, r.figure(), r.settings

        x, figure, tool_settings = self._run(model_value, work)
        model = self.registry.get(model_value)
        st = self._base(
            model_value,
            tool="hybrid",
            far=low_prompt,
            near=high_prompt,
            lowpass=tool_settings.get("lowpass", "gaussian"),
            n=n,
            cfg=scale,
            seed=seed,
        )
        st |= {key: tool_settings[key] for key in ("sigma", "kernel") if key in tool_settings}  # the Gaussian's
        st |= {"best of": k} if k > 1 else {}
        near = self.out.png(figure, {**st, "shown": "near, framed by the ranker's verdict"}, "hybrid-near")
        im = to_picture(x, model)
        small = im.resize((max(1, im.width // 4), max(1, im.height // 4)), Image.Resampling.LANCZOS)
        far_canvas = Image.new("RGB", im.size, "white")
        far_canvas.paste(small.convert("RGB"), ((im.width - small.width) // 2, (im.height - small.height) // 2))
        far = self.out.png(far_canvas, {**st, "shown": "far (1/4 size)"}, "hybrid-far")
        return near, far, settings_text({**st, **_probabilities(tool_settings)})
