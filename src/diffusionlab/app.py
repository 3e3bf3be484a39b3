"""The web UI: `diffusionlab serve`, a Gradio app with one tab for every Part A tool.

Optional extra: `pip install -e ".[app]"`. Gradio is imported only inside `build_app`/`serve`, so the core package
never needs it. The handlers are plain functions over the tools of `diffusionlab.edits` (no algorithm lives here);
the UI adds the model chooser, the input limits, PNG results with their settings, and one-line error messages.

Safety rules, all enforced on the server (an API client can send anything a browser can):
- a model is chosen by a value from the server's own list (shipped models, runs found under the runs directory,
  models given on the command line, DeepFloyd IF where its weights are on disk); a path is never taken from the
  browser, and run paths are resolved and must stay inside the runs directory;
- uploaded files are read only from Gradio's upload cache, after a size check, and only when their header says
  they are an image of at most `max_pixels` pixels;
- one job at a time per model (a lock per model, inside Gradio's queue), a bounded queue, bounded sizes.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, PngImagePlugin, UnidentifiedImageError
from torch import Tensor

from diffusionlab.checkpoint import WEIGHTS_NAME
from diffusionlab.errors import DiffusionLabError
from diffusionlab.figures import to_pil
from diffusionlab.model import SHIPPED, shipped_path

log = logging.getLogger("diffusionlab.app")

TABS = ("generate", "noise", "sdedit", "inpaint", "anagram", "hybrid")
DEEPFLOYD_REPOS = ("DeepFloyd/IF-I-XL-v1.0", "DeepFloyd/IF-I-L-v1.0", "DeepFloyd/IF-I-M-v1.0")


@dataclass(frozen=True)
class Limits:
    """Caps on what one request may ask for."""

    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_images: int = 16  # images per request (prompts x n)
    max_steps: int = 1000
    max_cached_models: int = 3
    queue_size: int = 64


# ---------------------------------------------------------------------------------------------------------------
# models: the chooser's list and an in-memory cache
# ---------------------------------------------------------------------------------------------------------------
def hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "hub"


def deepfloyd_available(cache: Path | None = None) -> str | None:
    """The first DeepFloyd IF stage I variant (e.g. "IF-I-XL-v1.0") whose weights are in the Hugging Face cache, or
    None. Only looks at the files; nothing is loaded."""
    cache = cache or hf_hub_cache()
    for repo in DEEPFLOYD_REPOS:
        snapshots = cache / ("models--" + repo.replace("/", "--")) / "snapshots"
        if not snapshots.is_dir():
            continue
        for snap in snapshots.iterdir():
            unet = snap / "unet"
            if unet.is_dir() and any(p.suffix in (".safetensors", ".bin") for p in unet.iterdir()):
                return repo.split("/")[1]
    return None


def _describe_run(config_path: Path) -> str:
    try:
        cfg = json.loads(config_path.read_text())
        return f"{cfg.get('kind', '?')} {cfg.get('objective', 'ddpm')}, {cfg.get('data', '?')}"
    except (OSError, ValueError):
        return "unreadable config"


class ModelRegistry:
    """Which models the chooser offers, and the loaded ones (an LRU cache) with one lock per model."""

    def __init__(
        self,
        runs_dir: str | Path | None,
        device: str = "auto",
        extra_models: Sequence[str | Path] = (),
        limits: Limits = Limits(),
        max_depth: int = 4,
    ) -> None:
        self.runs_dir = Path(runs_dir).resolve() if runs_dir else None
        self.device = device
        self.extra = [str(Path(m).resolve()) if Path(m).exists() else str(m) for m in extra_models]
        self.limits = limits
        self.max_depth = max_depth
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- the list --------------------------------------------------------------------------------------------
    def choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs: shipped models present, given models, runs under runs_dir, DeepFloyd if cached."""
        out: list[tuple[str, str]] = []
        for name in SHIPPED:
            if shipped_path(name).is_file():
                out.append((f"{name} (shipped)", f"shipped:{name}"))
        for spec in self.extra:
            if spec in SHIPPED:
                if shipped_path(spec).is_file() and (f"{spec} (shipped)", f"shipped:{spec}") not in out:
                    out.append((f"{spec} (shipped)", f"shipped:{spec}"))
            elif spec != "deepfloyd":
                out.append((f"{spec} (given at start)", f"given:{spec}"))
        for rel in self.runs():
            out.append((f"run: {rel} ({_describe_run(self.runs_dir / rel / 'model.json')})", f"run:{rel}"))
        variant = deepfloyd_available()
        if variant:
            out.append((f"DeepFloyd {variant} (stage I, local weights)", f"deepfloyd:{variant}"))
        elif "deepfloyd" in self.extra:
            out.append(("DeepFloyd IF (stage I, --model-dir / cache)", "deepfloyd"))
        return out

    def runs(self) -> list[str]:
        """Run directories (relative to runs_dir) that hold a model.safetensors, at most max_depth levels down."""
        if self.runs_dir is None or not self.runs_dir.is_dir():
            return []
        found = []
        for path in self.runs_dir.rglob(WEIGHTS_NAME):
            rel = path.parent.relative_to(self.runs_dir)
            if len(rel.parts) > self.max_depth:
                continue
            if not path.resolve().is_relative_to(self.runs_dir):  # a symlink pointing out of the runs dir
                continue
            found.append(rel.as_posix() or ".")
        return sorted(found)

    def default(self, wanted: str | None = None) -> str | None:
        values = [v for _, v in self.choices()]
        if wanted:
            for candidate in (wanted, f"shipped:{wanted}", f"run:{wanted}", f"given:{wanted}"):
                if candidate in values:
                    return candidate
            if self.runs_dir and Path(wanted).exists():
                resolved = Path(wanted).resolve()
                if resolved.is_relative_to(self.runs_dir):
                    return f"run:{resolved.relative_to(self.runs_dir).as_posix() or '.'}"
                if str(resolved) in self.extra:
                    return f"given:{resolved}"
        return values[0] if values else None

    def spec_for(self, value: str | None) -> str:
        """A chooser value -> what `load_model` takes. Anything not on the server's list is refused."""
        if not value:
            raise DiffusionLabError("no model chosen; pick one in the model list (or start the app with --model)")
        values = {v for _, v in self.choices()}
        if value not in values:
            raise DiffusionLabError(f"unknown model {value!r}; pick one from the list (press ↻ to refresh it)")
        if value.startswith("shipped:"):
            return value.removeprefix("shipped:")
        if value.startswith("given:"):
            return value.removeprefix("given:")
        if value.startswith("run:"):
            assert self.runs_dir is not None
            path = (self.runs_dir / value.removeprefix("run:")).resolve()
            if not path.is_relative_to(self.runs_dir):
                raise DiffusionLabError("that run is outside the runs directory")
            return str(path)
        return value  # deepfloyd

    # -- loading ---------------------------------------------------------------------------------------------
    def lock(self, value: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(value, threading.Lock())

    def get(self, value: str | None):
        spec = self.spec_for(value)
        with self._guard:
            if value in self._models:
                self._models.move_to_end(value)
                return self._models[value]
        from diffusionlab.commands.common import open_model

        model = open_model(spec, self.device)
        with self._guard:
            self._models[value] = model
            while len(self._models) > self.limits.max_cached_models:
                self._models.popitem(last=False)
        return model


# ---------------------------------------------------------------------------------------------------------------
# input and output at the edge
# ---------------------------------------------------------------------------------------------------------------
def _upload_roots() -> list[Path]:
    roots = [Path(tempfile.gettempdir()) / "gradio"]
    if os.environ.get("GRADIO_TEMP_DIR"):
        roots.insert(0, Path(os.environ["GRADIO_TEMP_DIR"]))
    return [r.resolve() for r in roots]


def _payload_path(payload: Any) -> str | None:
    if payload is None:
        return None
    if isinstance(payload, dict):
        return payload.get("path")
    return getattr(payload, "path", None)


def open_upload(payload: Any, limits: Limits, what: str = "image", required: bool = True) -> Image.Image | None:
    """A file the browser uploaded (Gradio's raw payload) -> a fully decoded PIL image, or a one-line error."""
    path = _payload_path(payload)
    if not path:
        if required:
            raise DiffusionLabError(f"no {what}: upload one first")
        return None
    p = Path(path).resolve()
    if not any(p.is_relative_to(root) for root in _upload_roots()):
        raise DiffusionLabError(f"the {what} must be a file uploaded through this page")
    if not p.is_file():
        raise DiffusionLabError(f"the uploaded {what} is gone from the server; upload it again")
    size = p.stat().st_size
    if size > limits.max_upload_bytes:
        raise DiffusionLabError(
            f"the {what} is {size / 2**20:.1f} MB; the limit is {limits.max_upload_bytes / 2**20:.0f} MB"
        )
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w * h > limits.max_pixels:
                raise DiffusionLabError(
                    f"the {what} is {w}x{h} = {w * h / 1e6:.1f} megapixels; the limit is {limits.max_pixels / 1e6:.1f}"
                )
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise DiffusionLabError(
            f"the uploaded {what} is not a picture Pillow can read; use a PNG, JPEG or WebP file"
        ) from None


def flatten(im: Image.Image, background: str = "white") -> Image.Image:
    """RGBA -> RGB over a background (drawings on a transparent canvas)."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        base = Image.new("RGBA", im.size, background)
        return Image.alpha_composite(base, im).convert("RGB")
    return im.convert("RGB")


def editor_parts(payload: Any, limits: Limits) -> tuple[Image.Image | None, Image.Image | None, list[Image.Image]]:
    """gr.ImageEditor's raw value -> (background, composite, layers) as PIL images (any may be missing)."""
    if not payload:
        return None, None, []
    get = payload.get if isinstance(payload, dict) else lambda k: getattr(payload, k, None)
    background = open_upload(get("background"), limits, "image", required=False)
    composite = open_upload(get("composite"), limits, "drawing", required=False)
    layers = [im for im in (open_upload(x, limits, "layer", required=False) for x in (get("layers") or [])) if im]
    return background, composite, layers


def image_to_tensor(im: Image.Image, model, invert: str = "auto") -> Tensor:
    """A PIL image -> (1, C, H, W) in the model's value range and size (images.py's loader: resize + centre crop).

    invert "auto": one-channel (MNIST-like) models see light strokes on a dark ground, so a light picture (a
    drawing on white) is inverted; "yes"/"no" force it.
    """
    from diffusionlab.images import pil_to_tensor

    flat = flatten(im)
    if invert == "auto":
        gray = flat.convert("L")
        mean = sum(i * c for i, c in enumerate(gray.histogram())) / max(1, gray.width * gray.height) / 255
        do_invert = model.image_shape[0] == 1 and mean > 0.5
    else:
        do_invert = invert == "yes"
    return pil_to_tensor(flat, model.image_shape, model.value_range, invert=do_invert).to(model.device)


def mask_from_layers(layers: list[Image.Image], size: tuple[int, int], model) -> Tensor | None:
    """Brush strokes (the editor's layers, painted = opaque) -> a (1, 1, H, W) 0/1 mask at the model's size,
    cropped like the image it was painted on. None when nothing was painted."""
    from diffusionlab.images import resize_crop

    alpha = Image.new("L", size, 0)
    for layer in layers:
        a = layer.convert("RGBA").getchannel("A")
        if a.size != size:
            a = a.resize(size, Image.Resampling.NEAREST)
        alpha = Image.fromarray(np.maximum(np.asarray(alpha), np.asarray(a)))
    if not np.asarray(alpha).any():
        return None
    _, h, w = model.image_shape
    small = np.asarray(resize_crop(alpha, h, w), dtype=np.float32) / 255.0
    return torch.from_numpy((small >= 0.25).astype(np.float32)).view(1, 1, h, w).to(model.device)


def display_scale(h: int) -> int:
    return max(1, 224 // h)


def upscale(im: Image.Image, scale: int) -> Image.Image:
    return im if scale == 1 else im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)


class Outputs:
    """Result PNGs (upscaled for the screen, settings in the PNG text) in a private folder the app serves."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = Path(directory or tempfile.mkdtemp(prefix="diffusionlab-app-"))
        self.dir.mkdir(parents=True, exist_ok=True)

    def prune(self, max_age_s: float = 3600.0) -> None:
        """Forget results older than max_age_s (Gradio keeps its own copy for the page that showed them)."""
        cutoff = time.time() - max_age_s
        for f in self.dir.glob("*.png"):
            try:
                if f.stat().st_mtime < cutoff:
                    f.unlink()
            except OSError:
                pass

    def png(self, im: Image.Image, settings: dict[str, Any], stem: str) -> str:
        self.writes = getattr(self, "writes", 0) + 1
        if self.writes % 100 == 0:
            self.prune()
        info = PngImagePlugin.PngInfo()
        info.add_text("diffusionlab", json.dumps(settings, sort_keys=True))
        path = self.dir / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.png"
        im.save(path, format="PNG", pnginfo=info)
        return str(path)

    def tensor_png(self, x: Tensor, model, settings: dict[str, Any], stem: str) -> str:
        im = to_pil(x.detach().cpu(), model.value_range)
        return self.png(upscale(im, display_scale(x.shape[-2])), settings, stem)

    def row_png(self, xs: Tensor, model, settings: dict[str, Any], stem: str, pad: int = 4) -> str:
        """(N, C, H, W) -> one PNG, side by side."""
        ims = [upscale(to_pil(x.detach().cpu(), model.value_range), display_scale(x.shape[-2])) for x in xs]
        w = sum(i.width for i in ims) + pad * (len(ims) - 1)
        canvas = Image.new("RGB", (w, max(i.height for i in ims)), "white")
        left = 0
        for i in ims:
            canvas.paste(i.convert("RGB"), (left, 0))
            left += i.width + pad
        return self.png(canvas, settings, stem)


def settings_text(settings: dict[str, Any]) -> str:
    return " · ".join(f"**{k}** {v}" for k, v in settings.items())


# ---------------------------------------------------------------------------------------------------------------
# parsing and checks of the form values
# ---------------------------------------------------------------------------------------------------------------
def parse_prompts(text: str, what: str = "prompt") -> list[str]:
    prompts = [p.strip() for p in str(text or "").replace("\n", ",").split(",")]
    prompts = [p for p in prompts if p]
    return prompts or [""]


def as_int(value: Any, name: str, lo: int, hi: int) -> int:
    try:
        v = int(round(float(value)))
    except (TypeError, ValueError):
        raise DiffusionLabError(f"{name} must be a whole number, got {value!r}") from None
    if not lo <= v <= hi:
        raise DiffusionLabError(f"{name} must be between {lo} and {hi}, got {v}")
    return v


def as_float(value: Any, name: str, lo: float, hi: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DiffusionLabError(f"{name} must be a number, got {value!r}") from None
    if not (lo <= v <= hi):
        raise DiffusionLabError(f"{name} must be between {lo} and {hi}, got {v}")
    return v


def seed_value(seed: Any) -> int:
    """-1 (or empty) draws a random seed, which is then shown with the result."""
    if seed in (None, "") or int(float(seed)) < 0:
        return int(torch.randint(0, 2**31 - 1, (1,)).item())
    return as_int(seed, "seed", 0, 2**63 - 1)


def timesteps_for(model, steps: int) -> list[int]:
    """`steps` strided timesteps of the model, from the course's start (e.g. 290 for T = 300) down to 0."""
    from diffusionlab.schedule import strided_timesteps

    full = strided_timesteps(model.schedule.num_steps)
    if steps == len(full):
        return full
    start = full[0]
    if steps == 1:
        return [start]
    ts = sorted({round(start - i * start / (steps - 1)) for i in range(steps)}, reverse=True)
    return ts


def check_ddpm(model, what: str) -> None:
    require = getattr(model, "require", None)
    if require is not None:
        require(("time", "class"), "ddpm", what)


def model_label(registry: ModelRegistry, value: str) -> str:
    return next((label for label, v in registry.choices() if v == value), value)


# ---------------------------------------------------------------------------------------------------------------
# the app
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class AppState:
    registry: ModelRegistry
    limits: Limits
    outputs: Outputs
    calls: dict[str, int] = field(default_factory=dict)


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
    from diffusionlab.commands.common import generator_for

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

    def _steps(self, steps: Any, model) -> int:
        return as_int(steps, "steps", 1, min(self.limits.max_steps, model.schedule.num_steps))

    # -- Generate (A0, A1.5, A1.6) ------------------------------------------------------------------------------
    def generate(self, model_value, prompts, n, steps, scale, seed):
        from diffusionlab import edits, sampling

        plist = parse_prompts(prompts)
        n = self._n(n, len(plist))
        steps = as_int(steps, "steps", 1, self.limits.max_steps)
        scale = as_float(scale, "CFG scale", 0.0, 50.0)
        seed = seed_value(seed)

        def work(model):
            gen = _generator(seed)
            objective = getattr(model, "objective", "ddpm")
            if objective == "flow":
                cond = model.encode([p for p in plist for _ in range(n)])
                x = sampling.flow_sample(model, n * len(plist), steps, cond, model.null(1), scale, generator=gen)
                return x, steps
            check_ddpm(model, "sampling")
            if steps > model.schedule.num_steps:
                raise DiffusionLabError(f"steps must be at most {model.schedule.num_steps} for this model")
            conds = model.encode([p if p else edits.unconditional_prompt(model) for p in plist for _ in range(n)])
            ts = timesteps_for(model, steps)
            x = edits.sample(model, n * len(plist), conds, scale, ts, gen)
            return x, len(ts)

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
        kernel = as_int(kernel, "blur kernel", 1, 99)
        sigma = as_float(sigma, "blur sigma", 0.01, 50.0)
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
            model_value, tool="noise", t=t, blur=f"{kernel}/{sigma}", prompt=prompt or "(none)", cfg=scale, seed=seed
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
                if fallback != "course mask":
                    raise DiffusionLabError("no mask: paint over the part to replace with the brush")
                mask, how = images.default_mask(model.image_shape).to(model.device), "course mask"
            ts = timesteps_for(model, self._steps(steps, model))
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
            ts = timesteps_for(model, self._steps(steps, model))
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
        sigma = as_float(sigma, "sigma", 0.1, 50.0)
        kernel = as_int(kernel, "kernel", 3, 99)
        if kernel % 2 == 0:
            raise DiffusionLabError(f"kernel must be odd, got {kernel}")
        scale = as_float(scale, "CFG scale", 0.0, 50.0)
        seed = seed_value(seed)
        steps = as_int(steps, "steps", 1, self.limits.max_steps)

        def work(model):
            check_ddpm(model, "hybrid images")
            ts = timesteps_for(model, self._steps(steps, model))
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


def build_app(
    runs_dir: str | Path | None = None,
    default_model: str | None = None,
    device: str = "auto",
    extra_models: Sequence[str | Path] = (),
    limits: Limits = Limits(),
    output_dir: str | Path | None = None,
):
    """The Gradio Blocks app (not launched); `serve` launches it. Gradio is imported here, not at module import."""
    import gradio as gr

    from diffusionlab.views import VIEW_HELP, VIEW_NAMES

    registry = ModelRegistry(runs_dir, device, extra_models, limits)
    h = Handlers(registry, limits, Outputs(Path(output_dir) if output_dir else None))
    choices = registry.choices()
    default = registry.default(default_model)

    def progress_wrap(fn):
        def run(*args, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - Gradio's idiom
            return fn(*args)

        run.__name__ = fn.__name__
        return user_errors(run)

    heavy = {"concurrency_id": "models", "concurrency_limit": 2, "preprocess": False, "show_progress": "full"}
    seed_help = "seed (-1: a random one, shown with the result)"
    png = {"format": "png", "buttons": ["download", "fullscreen"], "interactive": False}
    steps_label = "steps (30 = the course's strided schedule)"
    invert_choices = ["auto", "yes", "no"]
    invert_info = "MNIST models want light strokes on dark: 'auto' inverts light pictures"

    with gr.Blocks(title="diffusionlab", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "## diffusionlab\nDiffusion models as an image tool: sampling with CFG, noising and denoising, SDEdit, "
            "inpainting, visual anagrams and hybrid images. Every result is a PNG (download button on the image) "
            "with its settings and seed written under it and inside the file."
        )
        with gr.Row():
            model = gr.Dropdown(
                choices=choices,
                value=default,
                label="Model",
                info="shipped models, runs in the runs directory, DeepFloyd IF when its weights are on disk",
                elem_id="model",
                scale=5,
            )
            refresh = gr.Button("↻ refresh list", scale=1, elem_id="refresh", size="sm")
        if not choices:
            gr.Markdown("**No model found.** Train one (`diffusionlab train class --out runs/x`) and press refresh.")

        with gr.Tabs():
            with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        g_prompts = gr.Textbox(
                            value="3, 7",
                            label="Prompts / classes (comma separated)",
                            info="a class name or digit for MNIST models ('3', 'seven', 'sneaker'); empty = unconditional",
                            elem_id="gen-prompts",
                        )
                        g_n = gr.Slider(
                            1, limits.max_images, value=4, step=1, label="images per prompt", elem_id="gen-n"
                        )
                        g_steps = gr.Slider(1, 300, value=30, step=1, label="steps", elem_id="gen-steps")
                        g_scale = gr.Slider(0, 20, value=5, step=0.5, label="CFG scale", elem_id="gen-cfg")
                        g_seed = gr.Number(value=0, precision=0, label=seed_help, elem_id="gen-seed")
                        g_run = gr.Button("Generate", variant="primary", elem_id="gen-run")
                    with gr.Column(scale=2):
                        g_out = gr.Gallery(
                            label="samples",
                            format="png",
                            columns=4,
                            elem_id="gen-out",
                            buttons=["download", "download_all"],
                        )
                        g_info = gr.Markdown(elem_id="gen-info")

            with gr.Tab("Noise & denoise", id="noise", elem_id="tab-noise"):
                with gr.Row():
                    with gr.Column(scale=1):
                        n_img = gr.Image(
                            label="image",
                            type="filepath",
                            sources=["upload", "clipboard"],
                            elem_id="noise-in",
                            height=240,
                        )
                        n_t = gr.Slider(0, 999, value=150, step=1, label="t (0 .. T-1)", elem_id="noise-t")
                        with gr.Row():
                            n_kernel = gr.Number(value=5, precision=0, label="blur kernel (odd)")
                            n_sigma = gr.Number(value=2.0, label="blur sigma")
                        n_prompt = gr.Textbox(value="", label="prompt for the denoiser (empty: unconditional)")
                        n_scale = gr.Slider(0, 20, value=1, step=0.5, label="CFG scale (1 = none)")
                        n_seed = gr.Number(value=0, precision=0, label=seed_help)
                        n_invert = gr.Radio(invert_choices, value="auto", label="invert", info=invert_info)
                        n_run = gr.Button("Noise and denoise", variant="primary", elem_id="noise-run")
                    with gr.Column(scale=2):
                        with gr.Row():
                            n_outs = [
                                gr.Image(label=lab, elem_id=f"noise-out-{k}", min_width=100, height=200, **png)
                                for k, lab in enumerate(
                                    ("original", "noisy x_t", "Gaussian blur", "one-step", "iterative")
                                )
                            ]
                        n_info = gr.Markdown(elem_id="noise-info")

            with gr.Tab("SDEdit", id="sdedit", elem_id="tab-sdedit"):
                with gr.Row():
                    with gr.Column(scale=1):
                        s_edit = gr.ImageEditor(
                            label="upload an image, or draw one on the canvas",
                            sources=["upload", "clipboard"],
                            type="filepath",
                            format="png",
                            canvas_size=(280, 280),
                            brush=gr.Brush(default_size="auto", colors=["#000000", "#ffffff"], color_mode="fixed"),
                            elem_id="sdedit-in",
                            height=360,
                        )
                        s_prompt = gr.Textbox(
                            value="", label="prompt (empty: unconditional SDEdit; a class/text: image-to-image)"
                        )
                        s_starts = gr.Textbox(value="1 3 5 7 10 20", label="i_start values", elem_id="sdedit-starts")
                        s_scale = gr.Slider(0, 20, value=5, step=0.5, label="CFG scale")
                        s_seed = gr.Number(value=0, precision=0, label=seed_help)
                        s_invert = gr.Radio(invert_choices, value="auto", label="invert", info=invert_info)
                        s_run = gr.Button("SDEdit", variant="primary", elem_id="sdedit-run")
                    with gr.Column(scale=2):
                        s_out = gr.Gallery(label="results by i_start", format="png", columns=7, elem_id="sdedit-out")
                        s_info = gr.Markdown(elem_id="sdedit-info")

            with gr.Tab("Inpaint", id="inpaint", elem_id="tab-inpaint"):
                with gr.Row():
                    with gr.Column(scale=1):
                        i_edit = gr.ImageEditor(
                            label="upload an image, then paint over the part to replace",
                            sources=["upload", "clipboard"],
                            type="filepath",
                            format="png",
                            brush=gr.Brush(default_size="auto", colors=["#ff0066"], color_mode="fixed"),
                            elem_id="inpaint-in",
                            height=360,
                        )
                        i_fallback = gr.Radio(
                            ["paint it", "course mask"],
                            value="paint it",
                            label="when nothing is painted",
                            info="course mask: rows 2-19, cols 24-41 at 64 px, scaled",
                        )
                        i_prompt = gr.Textbox(value="", label="prompt (empty: unconditional)")
                        i_n = gr.Slider(1, 8, value=2, step=1, label="number of results")
                        i_steps = gr.Slider(1, 100, value=30, step=1, label=steps_label, elem_id="inpaint-steps")
                        i_scale = gr.Slider(0, 20, value=5, step=0.5, label="CFG scale")
                        i_seed = gr.Number(value=0, precision=0, label=seed_help)
                        i_invert = gr.Radio(invert_choices, value="auto", label="invert", info=invert_info)
                        i_run = gr.Button("Inpaint", variant="primary", elem_id="inpaint-run")
                    with gr.Column(scale=2):
                        with gr.Row():
                            i_orig = gr.Image(label="input", elem_id="inpaint-orig", **png)
                            i_mask = gr.Image(label="mask (white = new content)", elem_id="inpaint-mask", **png)
                        i_out = gr.Image(label="results", elem_id="inpaint-out", **png)
                        i_info = gr.Markdown(elem_id="inpaint-info")

            with gr.Tab("Anagram", id="anagram", elem_id="tab-anagram"):
                with gr.Row():
                    with gr.Column(scale=1):
                        a_p1 = gr.Textbox(value="6", label="prompt seen upright")
                        a_p2 = gr.Textbox(value="9", label="prompt seen under the view")
                        a_view = gr.Dropdown(
                            [(f"{v}: {VIEW_HELP.get(v, '')}", v) for v in VIEW_NAMES], value="rot180", label="view"
                        )
                        a_n = gr.Slider(1, 8, value=4, step=1, label="number of images")
                        a_steps = gr.Slider(1, 100, value=30, step=1, label=steps_label, elem_id="anagram-steps")
                        a_scale = gr.Slider(0, 20, value=5, step=0.5, label="CFG scale")
                        a_seed = gr.Number(value=0, precision=0, label=seed_help)
                        a_run = gr.Button("Make anagrams", variant="primary", elem_id="anagram-run")
                    with gr.Column(scale=2):
                        a_up = gr.Image(label="upright", elem_id="anagram-up", **png)
                        a_view_out = gr.Image(label="under the view", elem_id="anagram-view", **png)
                        a_info = gr.Markdown(elem_id="anagram-info")

            with gr.Tab("Hybrid", id="hybrid", elem_id="tab-hybrid"):
                with gr.Row():
                    with gr.Column(scale=1):
                        hy_low = gr.Textbox(value="0", label="prompt seen from afar (low frequencies)")
                        hy_high = gr.Textbox(value="1", label="prompt seen close up (high frequencies)")
                        with gr.Row():
                            hy_sigma = gr.Number(value=0.875, label="sigma (2 at 64 px)")
                            hy_kernel = gr.Number(value=15, precision=0, label="kernel (odd; 33 at 64 px)")
                        hy_n = gr.Slider(1, 8, value=4, step=1, label="number of images")
                        hy_steps = gr.Slider(1, 100, value=30, step=1, label=steps_label, elem_id="hybrid-steps")
                        hy_scale = gr.Slider(0, 20, value=5, step=0.5, label="CFG scale")
                        hy_seed = gr.Number(value=0, precision=0, label=seed_help)
                        hy_run = gr.Button("Make hybrids", variant="primary", elem_id="hybrid-run")
                    with gr.Column(scale=2):
                        hy_near = gr.Image(label="near", elem_id="hybrid-near", **png)
                        hy_far = gr.Image(label="far (downscaled)", elem_id="hybrid-far", **png)
                        hy_info = gr.Markdown(elem_id="hybrid-info")

        refresh.click(
            lambda v: gr.Dropdown(
                choices=registry.choices(), value=v if v in {c for _, c in registry.choices()} else registry.default()
            ),
            inputs=model,
            outputs=model,
            api_name=False,
            queue=False,
        )
        g_run.click(
            progress_wrap(h.generate),
            [model, g_prompts, g_n, g_steps, g_scale, g_seed],
            [g_out, g_info],
            api_name="generate",
            **heavy,
        )
        n_run.click(
            progress_wrap(h.noise),
            [model, n_img, n_t, n_kernel, n_sigma, n_prompt, n_scale, n_seed, n_invert],
            [*n_outs, n_info],
            api_name="noise",
            **heavy,
        )
        s_run.click(
            progress_wrap(h.sdedit),
            [model, s_edit, s_prompt, s_starts, s_scale, s_seed, s_invert],
            [s_out, s_info],
            api_name="sdedit",
            **heavy,
        )
        i_run.click(
            progress_wrap(h.inpaint),
            [model, i_edit, i_prompt, i_fallback, i_n, i_steps, i_scale, i_seed, i_invert],
            [i_orig, i_mask, i_out, i_info],
            api_name="inpaint",
            **heavy,
        )
        a_run.click(
            progress_wrap(h.anagram),
            [model, a_p1, a_p2, a_view, a_n, a_steps, a_scale, a_seed],
            [a_up, a_view_out, a_info],
            api_name="anagram",
            **heavy,
        )
        hy_run.click(
            progress_wrap(h.hybrid),
            [model, hy_low, hy_high, hy_sigma, hy_kernel, hy_n, hy_steps, hy_scale, hy_seed],
            [hy_near, hy_far, hy_info],
            api_name="hybrid",
            **heavy,
        )
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=2)
    demo.diffusionlab_handlers = h  # for tests and scripts
    return demo


def theme():
    """The default theme with system fonts (no web fonts: the app must work offline)."""
    import gradio as gr

    return gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def serve(
    host: str = "127.0.0.1",
    port: int = 7860,
    runs_dir: str | Path | None = "runs",
    default_model: str | None = None,
    device: str = "auto",
    extra_models: Sequence[str | Path] = (),
    limits: Limits = Limits(),
    block: bool = True,
    quiet: bool = False,
):
    """Build and launch the app on host:port (localhost by default). With block=False it returns the app."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise DiffusionLabError('the web UI needs Gradio: pip install -e ".[app]"') from None
    demo = build_app(runs_dir, default_model, device, extra_models, limits)
    try:
        _launch(demo, host, port, limits, block, quiet)
    except OSError as e:
        first = (str(e).splitlines() or [""])[0]
        raise DiffusionLabError(f"cannot listen on {host}:{port} ({first}); pass another --port") from None
    return demo


def _launch(demo, host: str, port: int, limits: Limits, block: bool, quiet: bool) -> None:
    demo.launch(
        server_name=host,
        server_port=port,
        max_file_size=limits.max_upload_bytes,
        show_error=False,
        prevent_thread_lock=not block,
        quiet=quiet,
        theme=theme(),
        footer_links=["api"],
        ssr_mode=False,
    )
