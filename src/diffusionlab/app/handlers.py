"""The work behind each tab (`Handlers`, testable without a browser) and the one-line error wrapper."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

import torch
from PIL import Image

from diffusionlab import sampling
from diffusionlab.app.inputs import (
    Outputs,
    as_float,
    as_int,
    check_ddpm,
    editor_parts,
    image_to_tensor,
    mask_from_layers,
    model_label,
    open_upload,
    parse_prompts,
    seed_value,
    settings_text,
)
from diffusionlab.app.registry import Limits, ModelRegistry
from diffusionlab.errors import DiffusionLabError

log = logging.getLogger("diffusionlab.app")


def user_errors(fn: Callable) -> Callable:
    """Our errors -> gr.Error with the one-line message; anything else -> a one-line message, logged with trace."""
    import gradio as gr

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except DiffusionLabError as e:
            raise gr.Error(str(e).splitlines()[0], print_exception=False) from None
        except torch.cuda.OutOfMemoryError:
            raise gr.Error("out of GPU memory: ask for fewer images or fewer steps", print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - the UI shows one line, the log keeps the trace
            log.exception("unexpected error in %s", fn.__name__)
            first = (str(e).splitlines() or [""])[0][:200]
            raise gr.Error(f"internal error ({type(e).__name__}: {first})", print_exception=False) from None

    return wrapper


def _prompt(text: str | None) -> str | None:
    """An empty prompt box -> None: the model's own 'unconditional' prompt ("" here, "a high quality photo" for IF)."""
    text = (text or "").strip()
    return text or None


def _generator(seed: int) -> torch.Generator:
    from diffusionlab.tools.inputs import generator_for

    return generator_for(seed)


class Handlers:
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

    def num_steps(self, model_value: str | None) -> int:
        """The chosen model's T, for the sliders' ranges (1000, IF's, when it cannot be told without loading IF)."""
        if not model_value or model_value.startswith("deepfloyd"):
            return 1000
        try:
            model = self.registry.get(model_value)
        except DiffusionLabError:
            return 1000
        schedule = getattr(model, "schedule", None)
        return schedule.num_steps if schedule is not None else 1000

    def _steps(self, steps: Any, model) -> int:
        return as_int(steps, "steps", 1, min(self.limits.max_steps, model.schedule.num_steps))

    # -- Generate (A0, A1.5, A1.6) ------------------------------------------------------------------------------
    def generate(self, model_value, prompts, n, steps, scale, seed):
        from diffusionlab import edits

        plist = parse_prompts(prompts)
        n = self._n(n, len(plist))
        steps = as_int(steps, "steps", 1, self.limits.max_steps)
        scale = as_float(scale, "CFG scale", 0.0, 50.0)
        seed = seed_value(seed)

        def work(model):
            from diffusionlab import tools

            if getattr(model, "objective", "ddpm") != "flow":
                check_ddpm(model, "sampling")
                if steps > model.schedule.num_steps:
                    raise DiffusionLabError(f"steps must be at most {model.schedule.num_steps} for this model")
            prompts = [p if p else edits.unconditional_prompt(model) for p in plist]
            r = tools.sample(model, prompts, n, steps, scale, seed)
            return r.images, steps

        x, used = self._run(model_value, work)
        model = self.registry.get(model_value)
        files = []
        for k, img in enumerate(x):
            prompt = plist[k // n]
            st = self._base(model_value, tool="generate", prompt=prompt, steps=used, cfg=scale, seed=seed, index=k)
            files.append((self.out.tensor_png(img, model, st, "generate"), f"{prompt or '(none)'} #{k % n}"))
        st = self._base(model_value, prompts=", ".join(plist), n=n, steps=used, cfg=scale, seed=seed)
        return files, settings_text(st)

    # -- Noise & denoise (A1.1 - A1.4) --------------------------------------------------------------------------
    def noise(self, model_value, upload, t, kernel, sigma, prompt, scale, seed, invert):
        from diffusionlab import edits

        im = open_upload(upload, self.limits)
        t = as_int(t, "t", 0, 10_000)
        kernel = None if kernel in (None, "") else as_int(kernel, "blur kernel", 1, 99)
        sigma = None if sigma in (None, "") else as_float(sigma, "blur sigma", 0.01, 50.0)
        scale = as_float(scale, "CFG scale", 0.0, 50.0)
        seed = seed_value(seed)

        def work(model):
            check_ddpm(model, "denoising")
            model.schedule.check_timestep(t)
            x0 = image_to_tensor(im, model, invert)
            gen = _generator(seed)
            ts = edits.default_timesteps(model)
            # iterative denoising starts at the strided timestep nearest t; the noisy image is made at that one
            i_start = min(range(len(ts)), key=lambda i: abs(ts[i] - t))
            x_t = edits.forward(model, x0, [t], gen)[0]
            x_ti = x_t if ts[i_start] == t else edits.forward(model, x0, [ts[i_start]], gen)[0]
            blurred = edits.blur(x_t, kernel, sigma)
            p = _prompt(prompt)
            one = edits.one_step_denoise(model, x_t, t, p, scale)
            it = edits.iterative_denoise(model, x_ti, i_start, p, scale, ts, gen)
            return x0, x_t, blurred, one, it, ts[i_start]

        x0, x_t, blurred, one, it, t_iter = self._run(model_value, work)
        model = self.registry.get(model_value)
        st = self._base(
            model_value,
            tool="noise",
            t=t,
            blur=f"{kernel or 'scaled'}/{sigma or 'scaled'}",
            prompt=prompt or "(none)",
            cfg=scale,
            seed=seed,
        )
        names = ("original", "noisy", "blur", "one-step", "iterative")
        files = [
            self.out.tensor_png(x[0], model, {**st, "image": name}, name)
            for name, x in zip(names, (x0, x_t, blurred, one, it), strict=True)
        ]
        return (*files, settings_text({**st, "iterative from t": t_iter}))

    # -- SDEdit (A1.7, A1.7.3) -----------------------------------------------------------------------------------
    def sdedit(self, model_value, editor, prompt, i_starts, scale, seed, invert):
        from diffusionlab import edits

        background, composite, layers = editor_parts(editor, self.limits)
        im = composite or background
        if im is None:
            raise DiffusionLabError("no image: upload one or draw on the canvas first")
        try:
            starts = [int(s) for s in str(i_starts).replace(",", " ").split()]
        except ValueError:
            raise DiffusionLabError(
                f"i_start values must be whole numbers, e.g. 1 3 5 7 10 20; got {i_starts!r}"
            ) from None
        if not starts or len(starts) > 12:
            raise DiffusionLabError("give between 1 and 12 i_start values, e.g. 1 3 5 7 10 20")
        scale = as_float(scale, "CFG scale", 0.0, 50.0)
        seed = seed_value(seed)

        def work(model):
            check_ddpm(model, "SDEdit")
            x0 = image_to_tensor(im, model, invert)
            out = edits.sdedit(model, x0, _prompt(prompt), starts, scale, _generator(seed))
            return x0, out, edits.default_timesteps(model)

        x0, out, ts = self._run(model_value, work)
        model = self.registry.get(model_value)
        st = self._base(model_value, tool="sdedit", prompt=prompt or "(none)", cfg=scale, seed=seed)
        files = [
            (
                self.out.tensor_png(x0[0], model, {**st, "image": "input"}, "sdedit-input"),
                "input (as the model sees it)",
            )
        ]
        for i, row in zip(starts, out, strict=True):
            files.append(
                (self.out.tensor_png(row[0], model, {**st, "i_start": i}, f"sdedit-i{i}"), f"i_start={i} (t={ts[i]})")
            )
        return files, settings_text({**st, "i_starts": " ".join(map(str, starts))})

    # -- Inpaint (A1.7.2) ----------------------------------------------------------------------------------------
    def inpaint(self, model_value, editor, prompt, fallback, n, steps, scale, seed, invert):
        from diffusionlab import edits, images

        background, composite, layers = editor_parts(editor, self.limits)
        if background is None:
            raise DiffusionLabError("no image: upload the picture to inpaint, then paint over the part to replace")
        n = self._n(n)
        scale = as_float(scale, "CFG scale", 0.0, 50.0)
        seed = seed_value(seed)
        steps = as_int(steps, "steps", 1, self.limits.max_steps)

        def work(model):
            check_ddpm(model, "inpainting")
            x0 = image_to_tensor(background, model, invert)
            mask = mask_from_layers(layers, background.size, model)
            how = "painted"
            if mask is None:
                if fallback not in ("default mask", "course mask"):  # "course mask": its name before
                    raise DiffusionLabError("no mask: paint over the part to replace with the brush")
                mask, how = images.default_mask(model.image_shape).to(model.device), "default mask"
            ts = sampling.timesteps_for(model, self._steps(steps, model))
            out = edits.inpaint(model, x0.expand(n, *x0.shape[1:]), mask, _prompt(prompt), scale, _generator(seed), ts)
            return x0, mask, out, how

        x0, mask, out, how = self._run(model_value, work)
        model = self.registry.get(model_value)
        st = self._base(
            model_value, tool="inpaint", prompt=prompt or "(none)", mask=how, n=n, steps=steps, cfg=scale, seed=seed
        )
        lo, hi = model.value_range
        mask_img = (mask[0].expand(model.image_shape[0], -1, -1) * (hi - lo) + lo).cpu()
        return (
            self.out.tensor_png(x0[0], model, {**st, "image": "input"}, "inpaint-input"),
            self.out.tensor_png(mask_img, model, {**st, "image": "mask"}, "inpaint-mask"),
            self.out.row_png(out, model, st, "inpaint"),
            settings_text(st),
        )

    # -- Anagram (A1.8) ------------------------------------------------------------------------------------------
    def anagram(self, model_value, prompt1, prompt2, view, n, steps, scale, seed):
        from diffusionlab import edits
        from diffusionlab.views import get_view

        n = self._n(n, 2)
        scale = as_float(scale, "CFG scale", 0.0, 50.0)
        seed = seed_value(seed)
        steps = as_int(steps, "steps", 1, self.limits.max_steps)

        def work(model):
            check_ddpm(model, "visual anagrams")
            v = get_view(str(view), model.image_shape, model.value_range, seed)
            ts = sampling.timesteps_for(model, self._steps(steps, model))
            x = edits.anagram(model, prompt1 or "", prompt2 or "", v, n, scale, _generator(seed), ts, seed=seed)
            return x, v.apply(x)

        up, viewed = self._run(model_value, work)
        model = self.registry.get(model_value)
        st = self._base(
            model_value,
            tool="anagram",
            steps=steps,
            prompt1=prompt1,
            prompt2=prompt2,
            view=view,
            n=n,
            cfg=scale,
            seed=seed,
        )
        return (
            self.out.row_png(up, model, {**st, "shown": "upright"}, "anagram-upright"),
            self.out.row_png(viewed, model, {**st, "shown": f"under {view}"}, "anagram-view"),
            settings_text(st),
        )

    # -- Hybrid (A1.9) -------------------------------------------------------------------------------------------
    def hybrid(self, model_value, low_prompt, high_prompt, sigma, kernel, n, steps, scale, seed):
        from diffusionlab import edits

        n = self._n(n, 2)
        sigma = None if sigma in (None, "") else as_float(sigma, "sigma", 0.1, 50.0)
        kernel = None if kernel in (None, "") else as_int(kernel, "kernel", 3, 99)
        if kernel is not None and kernel % 2 == 0:
            raise DiffusionLabError(f"kernel must be odd, got {kernel}")
        scale = as_float(scale, "CFG scale", 0.0, 50.0)
        seed = seed_value(seed)
        steps = as_int(steps, "steps", 1, self.limits.max_steps)

        def work(model):
            check_ddpm(model, "hybrid images")
            ts = sampling.timesteps_for(model, self._steps(steps, model))
            return edits.hybrid(
                model, low_prompt or "", high_prompt or "", n, sigma, kernel, scale, _generator(seed), ts
            )

        x = self._run(model_value, work)
        model = self.registry.get(model_value)
        st = self._base(
            model_value,
            tool="hybrid",
            steps=steps,
            far=low_prompt,
            near=high_prompt,
            sigma=sigma,
            kernel=kernel,
            n=n,
            cfg=scale,
            seed=seed,
        )
        near = self.out.row_png(x, model, {**st, "shown": "near"}, "hybrid-near")
        with Image.open(near) as im:
            small = im.resize((max(1, im.width // 4), max(1, im.height // 4)), Image.Resampling.LANCZOS)
            far_canvas = Image.new("RGB", im.size, "white")
            far_canvas.paste(small.convert("RGB"), ((im.width - small.width) // 2, (im.height - small.height) // 2))
        far = self.out.png(far_canvas, {**st, "shown": "far (1/4 size)"}, "hybrid-far")
        return near, far, settings_text(st)
