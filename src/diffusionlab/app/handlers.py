"""The work behind each tab (`Handlers`, testable without a browser) and the one-line error wrapper.

Every handler parses the form, calls the tool layer (`diffusionlab.tools`: the same functions as the CLI, the
report and a notebook, so the same seed gives the same image everywhere) and draws its Result as PNGs with their
settings. The illusions' handlers are in app/illusions.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

import torch
from torch import Tensor

from diffusionlab.app.illusions import IllusionHandlers
from diffusionlab.app.inputs import (
    Outputs,
    as_float,
    as_int,
    check_ddpm,
    editor_parts,
    model_label,
    open_upload,
    painted,
    parse_prompts,
    seed_value,
    settings_text,
)
from diffusionlab.app.pictures import to_mask, to_tensor
from diffusionlab.app.registry import Limits, ModelRegistry
from diffusionlab.app.testimages import (
    NO_PICK,
    NO_PICK_LABEL,
    invert_flag,
    pick_index,
    same_picture,
    test_choices,
    test_picture,
    test_tensor,
)
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_kinds import IF

log = logging.getLogger("diffusionlab.app")
IF_SAMPLE_STEPS = 34  # IF's default: the course's strided schedule 990, 960, ..., 0 (model_kinds.IF)
ERROR_SECONDS = 6  # an error toast fades by itself, so it never covers the next result for long


def user_errors(fn: Callable) -> Callable:
    """Our errors -> gr.Error with the one-line message; anything else -> a one-line message, logged with trace."""
    import gradio as gr

    def error(message: str):
        return gr.Error(message, duration=ERROR_SECONDS, print_exception=False)

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except DiffusionLabError as e:
            raise error(str(e).splitlines()[0]) from None
        except torch.cuda.OutOfMemoryError:
            raise error("out of GPU memory: ask for fewer images or fewer steps") from None
        except Exception as e:  # noqa: BLE001 - the UI shows one line, the log keeps the trace
            log.exception("unexpected error in %s", fn.__name__)
            first = (str(e).splitlines() or [""])[0][:200]
            raise error(f"internal error ({type(e).__name__}: {first})") from None

    return wrapper


def _prompt(text: str | None) -> str | None:
    """An empty prompt box -> None: the model's own 'unconditional' prompt ("" here, "a high quality photo" for IF)."""
    text = (text or "").strip()
    return text or None


class Handlers(IllusionHandlers):
    """The work behind each tab, as plain functions of the form values (testable without a browser).

    Every handler takes the chooser's value first, checks its inputs, runs under the model's lock and returns
    paths of PNG files plus a settings line.
    """

    def __init__(self, registry: ModelRegistry, limits: Limits, outputs: Outputs) -> None:
        self.registry, self.limits, self.out = registry, limits, outputs

    # -- helpers ---------------------------------------------------------------------------------------------
    def _run(self, model_value: str, fn: Callable[[Any], Any]) -> Any:
        model = self.registry.get(model_value)
        with self.registry.lock(model_value):
            return fn(model)

    def _base(self, model_value: str, **kw: Any) -> dict[str, Any]:
        return {"model": model_label(self.registry, model_value), **kw}

    def _n(self, n: Any, per: int = 1) -> int:
        n = as_int(n, "number of images", 1, self.limits.max_images)
        if n * per > self.limits.max_images:
            raise DiffusionLabError(f"{n} images x {per} prompts is more than the limit of {self.limits.max_images}")
        return n

    def _model_or_none(self, model_value: str | None):
        """The chosen model for the page's own needs (ranges, picker); None for IF (never loaded just for that)."""
        if not model_value or model_value.startswith("deepfloyd"):
            return None
        try:
            return self.registry.get(model_value)
        except DiffusionLabError:
            return None

    def num_steps(self, model_value: str | None) -> int:
        """The chosen model's T, for the sliders' ranges (1000, IF's, when it cannot be told without loading IF)."""
        model = self._model_or_none(model_value)
        return model.schedule.num_steps if model is not None and model.schedule is not None else 1000

    def sample_steps(self, model_value: str | None) -> int:
        """The chosen model's sampling steps when none are asked for: its kind's default, as the API's and the
        CLI's (IF's when it cannot be told without loading IF)."""
        model = self._model_or_none(model_value)
        return len(model.kind.timesteps(model)) if model is not None else IF_SAMPLE_STEPS

    def guidance_scale(self, model_value: str | None) -> float:
        """The chosen model's CFG scale when none is asked for: its measured default (stored with it) or its
        kind's, as the API's and the CLI's (IF's when it cannot be told without loading IF)."""
        model = self._model_or_none(model_value)
        return float(model.kind.guidance_scale(model)) if model is not None else float(IF.cfg_scale)

    # -- the test-image picker -------------------------------------------------------------------------------
    def test_choices(self, model_value: str | None) -> list[tuple[str, str]]:
        """The picker's choices for the chosen model's data set (only "none" for a model without one)."""
        try:
            return test_choices(self._model_or_none(model_value))
        except DiffusionLabError:
            return [(NO_PICK_LABEL, NO_PICK)]

    def test_picture(self, model_value: str | None, pick: Any) -> str | None:
        """The picked test image as a PNG for the page's image field (None: no pick, or no test set for it)."""
        model = self._model_or_none(model_value)
        index = pick_index(pick)
        if model is None or index is None:
            return None
        st = self._base(model_value, image=f"test:{index}")
        return self.out.png(test_picture(model, index), st, f"test{index}")

    def _pick(self, model, test: Any, im) -> int | None:
        """The picked test image, when the image field is empty or still shows its picture; None when the field
        holds the user's own picture (the server's rule: no browser event has to reset the picker)."""
        index = pick_index(test)
        if index is None or im is None:
            return index
        return index if same_picture(im, test_picture(model, index)) else None

    def _input(self, model, pick: int | None, im, invert: str) -> tuple[Tensor, str | None]:
        """The picked test image (exactly, as `test:N`) or the uploaded picture -> ((1, C, H, W), test source)."""
        if pick is not None:
            x, source = test_tensor(model, pick)
            if invert_flag(invert):
                lo, hi = model.value_range
                x = lo + hi - x
            return x, source
        return to_tensor(im, model, invert), None

    # -- Generate (A0, A1.5, A1.6) ------------------------------------------------------------------------------
    def generate(self, model_value, prompts, n, steps, scale, seed, sampler=""):
        from diffusionlab.steps import choose_step_rule

        plist = parse_prompts(prompts)
        n = self._n(n, len(plist))
        steps = as_int(steps, "steps", 1, self.limits.max_steps)
        scale = as_float(scale, "CFG scale", 0.0, 50.0) if any(plist) else None  # no prompt: nothing to guide
        seed = seed_value(seed)
        rule = choose_step_rule(sampler or None, None, None)  # "" (or None): the model's own step rule

        def work(model):
            from diffusionlab import tools
            from diffusionlab.edits import unconditional_prompt

            prompts = [p or unconditional_prompt(model) for p in plist] if any(plist) else None
            return tools.sample(model, prompts, n, steps, scale, seed, **rule)

        r = self._run(model_value, work)
        model = self.registry.get(model_value)
        files = []
        for k, img in enumerate(r.images):  # each PNG's text: the tool's settings (they remake it), and its prompt
            prompt = plist[k // n]
            png = self.out.tensor_png(img, model, {**r.settings, "prompt": prompt, "index": k}, "generate")
            files.append((png, f"{prompt or '(none)'} #{k % n + 1}"))
        return files, settings_text({**r.settings, "model": model_label(self.registry, model_value)})

    # -- Noise & denoise (A1.1 - A1.4) --------------------------------------------------------------------------
    def noise(self, model_value, upload, t, kernel, sigma, prompt, scale, seed, invert, test=NO_PICK):
        index = pick_index(test)  # a bad value: a one-line error before any work
        im = open_upload(upload, self.limits, required=False)
        if im is None and index is None:
            raise DiffusionLabError("no image: pick a test image or upload one first")
        t = as_int(t, "t", 0, 10_000)
        kernel = None if kernel in (None, "") else as_int(kernel, "blur kernel", 1, 99)
        sigma = None if sigma in (None, "") else as_float(sigma, "blur sigma", 0.01, 50.0)
        scale = as_float(scale, "CFG scale", 0.0, 50.0)
        seed = seed_value(seed)

        def work(model):
            from diffusionlab import tools
            from diffusionlab.edits import default_timesteps

            check_ddpm(model, "denoising")
            model.schedule.check_timestep(t)
            pick = self._pick(model, test, im)
            x0, source = self._input(model, pick, im, invert)
            ts = default_timesteps(model)
            # iterative denoising starts at the strided timestep nearest t, from the same noise
            i_start = min(range(len(ts)), key=lambda i: abs(ts[i] - t))
            p = _prompt(prompt)
            one = tools.one_step_denoise(model, x0, [t], p, scale, ("blur", "one-step"), kernel, sigma, seed)
            it = tools.iterative_denoise(model, x0, i_start, len(ts), p, scale, seed=seed)
            shown = [next(v for k, v in one.singles.items() if k.endswith(f"_{name}_t{t}")) for name in NOISE_SHOWN]
            return [x0[0], *shown, it.images[0]], ts[i_start], source, pick

        images, t_iter, source, pick = self._run(model_value, work)
        model = self.registry.get(model_value)
        st = self._base(
            model_value,
            tool="noise",
            image=f"test:{pick}" if pick is not None else "upload",
            t=t,
            blur=f"{kernel or 'scaled'}/{sigma or 'scaled'}",
            prompt=prompt or "(none)",
            cfg=scale,
            seed=seed,
        )
        names = ("original", "noisy", "blur", "one-step", "iterative")
        files = [
            self.out.tensor_png(x, model, {**st, "shown": name}, name) for name, x in zip(names, images, strict=True)
        ]
        return (*files, settings_text({**st, "iterative from t": t_iter, **_source(source)}))

    # -- SDEdit (A1.7, A1.7.3) -----------------------------------------------------------------------------------
    def sdedit(self, model_value, editor, prompt, i_starts, scale, seed, invert, test=NO_PICK):
        background, composite, layers = editor_parts(editor, self.limits)
        drawn = painted(layers)  # strokes on a test image: the drawing is the input
        im = composite or background
        if im is None and pick_index(test) is None:
            raise DiffusionLabError("no image: pick a test image, upload one or draw on the canvas first")
        starts = parse_starts(i_starts)
        scale = as_float(scale, "CFG scale", 0.0, 50.0)
        seed = seed_value(seed)

        def work(model):
            from diffusionlab import tools

            pick = None if drawn else self._pick(model, test, background or im)
            x0, source = self._input(model, pick, im, invert)
            cfg = scale if model.conditioned else None  # a model without prompts takes no scale
            return tools.sdedit(model, x0, _prompt(prompt), starts, 1, cfg, seed), source, pick

        r, source, pick = self._run(model_value, work)
        model = self.registry.get(model_value)
        image = f"test:{pick}" if pick is not None else "upload/drawing"
        st = self._base(model_value, tool="sdedit", image=image, prompt=prompt or "(none)", cfg=scale, seed=seed)
        files = [(self.out.tensor_png(r.parts["inputs"][0], model, {**st, "shown": "input"}, "sdedit-input"), "input")]
        for k, (i, label) in enumerate(zip(starts, r.panels[0].col_labels, strict=False)):
            files.append((self.out.tensor_png(r.images[k, 0], model, {**st, "i_start": i}, f"sdedit-i{i}"), label))
        return files, settings_text({**st, "i_starts": " ".join(map(str, starts)), **_source(source)})

    # -- Inpaint (A1.7.2) ----------------------------------------------------------------------------------------
    def inpaint(self, model_value, editor, prompt, fallback, n, scale, seed, invert, test=NO_PICK):
        background, _, layers = editor_parts(editor, self.limits)
        if background is None and pick_index(test) is None:
            raise DiffusionLabError("no image: pick a test image or upload one, then paint over the part to replace")
        n = self._n(n)
        scale = as_float(scale, "CFG scale", 0.0, 50.0)
        seed = seed_value(seed)

        def work(model):
            from diffusionlab import tools
            from diffusionlab.images import default_mask

            pick = self._pick(model, test, background)
            x0, source = self._input(model, pick, background, invert)
            mask = to_mask(layers, background.size, model) if background is not None else None
            how = "painted"
            if mask is None:
                if fallback not in ("default mask", "course mask"):  # "course mask": its name before
                    raise DiffusionLabError("no mask: paint over the part to replace with the brush")
                mask, how = default_mask(model.image_shape).to(model.device), "default mask"
            r = tools.inpaint(model, x0, mask, _prompt(prompt), n, scale if model.conditioned else None, seed)
            return x0, mask, r.images, how, source, pick

        x0, mask, out, how, source, pick = self._run(model_value, work)
        model = self.registry.get(model_value)
        image = f"test:{pick}" if pick is not None else "upload"
        st = self._base(
            model_value, tool="inpaint", image=image, prompt=prompt or "(none)", mask=how, n=n, cfg=scale, seed=seed
        )
        lo, hi = model.value_range
        mask_img = (mask[0].expand(model.image_shape[0], -1, -1) * (hi - lo) + lo).cpu()
        return (
            self.out.tensor_png(x0[0], model, {**st, "shown": "input"}, "inpaint-input"),
            self.out.tensor_png(mask_img, model, {**st, "shown": "mask"}, "inpaint-mask"),
            self.out.row_png(out, model, st, "inpaint"),
            settings_text({**st, **_source(source)}),
        )


NOISE_SHOWN = ("noisy", "blur", "one-step")


def _source(source: str | None) -> dict[str, str]:
    return {"test image from": source} if source else {}


def parse_starts(text: Any) -> list[int]:
    """SDEdit's i_start box ("1 3 5 7 10 20", commas allowed) -> 1 to 12 whole numbers, or a one-line error."""
    try:
        starts = [int(s) for s in str(text).replace(",", " ").split()]
    except ValueError:
        raise DiffusionLabError(f"i_start values must be whole numbers, e.g. 1 3 5 7 10 20; got {text!r}") from None
    if not starts or len(starts) > 12:
        raise DiffusionLabError("give between 1 and 12 i_start values, e.g. 1 3 5 7 10 20")
    return starts
