"""The Gradio page (`build_app`) and its launch (`serve`); Gradio is imported only inside these functions."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffusionlab.app.handlers import Handlers, user_errors
from diffusionlab.app.inputs import Outputs
from diffusionlab.app.registry import Limits, ModelRegistry
from diffusionlab.errors import DiffusionLabError

log = logging.getLogger("diffusionlab.app")

# -- what the tabs share --------------------------------------------------------------------------------------------
HEAVY = {"concurrency_id": "models", "concurrency_limit": 2, "preprocess": False, "show_progress": "full"}
SEED_HELP = "seed (-1: a random one, shown with the result)"
PNG = {"format": "png", "buttons": ["download", "fullscreen"], "interactive": False}
STEPS_LABEL = "steps (30 = the course's strided schedule)"
INVERT_CHOICES = ["auto", "yes", "no"]
INVERT_INFO = "MNIST models want light strokes on dark: 'auto' inverts light pictures"


@dataclass(frozen=True)
class Page:
    """What every tab needs: gradio, the handlers, the model chooser and the limits."""

    gr: Any
    h: Handlers
    model: Any
    limits: Limits
    num_steps: int = 300  # T of the model chosen at start; the sliders below follow the chooser
    ranged: list = field(default_factory=list)  # (slider, "t" | "steps"): ranged by the chosen model's T

    def slider_t(self, value: int, **kw):
        s = self.gr.Slider(0, self.num_steps - 1, value=min(value, self.num_steps - 1), step=1, **kw)
        self.ranged.append((s, "t"))
        return s

    def slider_steps(self, value: int, **kw):
        s = self.gr.Slider(1, self.num_steps, value=min(value, self.num_steps), step=1, **kw)
        self.ranged.append((s, "steps"))
        return s

    def wire(self, button, fn, inputs: list, outputs: list, api_name: str) -> None:
        """button runs fn(model, *inputs) -> outputs, with a progress bar, user errors as one line, API name."""
        gr = self.gr

        def run(*args, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - Gradio's idiom
            return fn(*args)

        run.__name__ = fn.__name__
        button.click(user_errors(run), [self.model, *inputs], outputs, api_name=api_name, **HEAVY)

    def seed(self):
        return self.gr.Number(value=0, precision=0, label=SEED_HELP)

    def scale(self, value: float = 5):
        return self.gr.Slider(0, 20, value=value, step=0.5, label="CFG scale")

    def invert(self):
        return self.gr.Radio(INVERT_CHOICES, value="auto", label="invert", info=INVERT_INFO)


def build_app(
    runs_dir: str | Path | None = None,
    default_model: str | None = None,
    device: str = "auto",
    extra_models: Sequence[str | Path] = (),
    limits: Limits = Limits(),  # noqa: B008 - a frozen dataclass
    output_dir: str | Path | None = None,
):
    """The Gradio Blocks app (not launched); `serve` launches it. Gradio is imported here, not at module import."""
    import gradio as gr

    registry = ModelRegistry(runs_dir, device, extra_models, limits)
    h = Handlers(registry, limits, Outputs(Path(output_dir) if output_dir else None))
    with checked_blocks()(title="diffusionlab", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "## diffusionlab\nDiffusion models as an image tool: sampling with CFG, noising and denoising, SDEdit, "
            "inpainting, visual anagrams and hybrid images. Every result is a PNG (download button on the image) "
            "with its settings and seed written under it and inside the file."
        )
        chooser = _model_chooser(gr, registry, default_model)
        page = Page(gr, h, chooser, limits, h.num_steps(registry.default(default_model)))
        with gr.Tabs():
            for tab in (_generate_tab, _noise_tab, _sdedit_tab, _inpaint_tab, _anagram_tab, _hybrid_tab):
                tab(page)
        _range_by_model(page)
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=2)
    demo.diffusionlab_handlers = h  # for tests and scripts
    return demo


def _range_by_model(page: Page) -> None:
    """A t slider goes to T - 1 and a steps slider to T of the model chosen (300 for ours, 1000 for IF)."""
    gr = page.gr

    def update(model_value):
        T = page.h.num_steps(model_value)
        return [gr.Slider(maximum=T - 1 if kind == "t" else T) for _, kind in page.ranged]

    page.model.change(update, page.model, [s for s, _ in page.ranged], api_name=False, queue=False)


def _model_chooser(gr, registry: ModelRegistry, default_model: str | None):
    """The model dropdown and its refresh button (the list of runs is read again on a click)."""
    choices = registry.choices()
    with gr.Row():
        model = gr.Dropdown(
            choices=choices,
            value=registry.default(default_model),
            label="Model",
            info="shipped models, runs in the runs directory, DeepFloyd IF when its weights are on disk",
            elem_id="model",
            scale=5,
        )
        refresh = gr.Button("↻ refresh list", scale=1, elem_id="refresh", size="sm")
    if not choices:
        gr.Markdown("**No model found.** Train one (`diffusionlab train class --out runs/x`) and press refresh.")
    refresh.click(
        lambda v: gr.Dropdown(
            choices=registry.choices(), value=v if v in {c for _, c in registry.choices()} else registry.default()
        ),
        inputs=model,
        outputs=model,
        api_name=False,
        queue=False,
    )
    return model


def _generate_tab(page: Page) -> None:
    gr = page.gr
    with gr.Tab("Generate", id="generate", elem_id="tab-generate"), gr.Row():
        with gr.Column(scale=1):
            prompts = gr.Textbox(
                value="3, 7",
                label="Prompts / classes (comma separated)",
                info="a class name or digit for MNIST models ('3', 'seven', 'sneaker'); empty = unconditional",
                elem_id="gen-prompts",
            )
            n = gr.Slider(1, page.limits.max_images, value=4, step=1, label="images per prompt", elem_id="gen-n")
            steps = page.slider_steps(30, label="steps", elem_id="gen-steps")
            scale = gr.Slider(0, 20, value=5, step=0.5, label="CFG scale", elem_id="gen-cfg")
            seed = gr.Number(value=0, precision=0, label=SEED_HELP, elem_id="gen-seed")
            run = gr.Button("Generate", variant="primary", elem_id="gen-run")
        with gr.Column(scale=2):
            out = gr.Gallery(
                label="samples", format="png", columns=4, elem_id="gen-out", buttons=["download", "download_all"]
            )
            info = gr.Markdown(elem_id="gen-info")
    page.wire(run, page.h.generate, [prompts, n, steps, scale, seed], [out, info], "generate")


def _noise_tab(page: Page) -> None:
    gr = page.gr
    with gr.Tab("Noise & denoise", id="noise", elem_id="tab-noise"), gr.Row():
        with gr.Column(scale=1):
            img = gr.Image(
                label="image", type="filepath", sources=["upload", "clipboard"], elem_id="noise-in", height=240
            )
            t = page.slider_t(140, label="t (0 .. T-1)", elem_id="noise-t")  # i_start 15 at 28 px (docs/parta_28px.md)
            with gr.Row():
                # the CLI's default at 28 px: 5 / 2.0 at 64 px scaled to 3 / 0.875 (an empty field: scaled to the model)
                kernel = gr.Number(value=3, precision=0, label="blur kernel (odd; 5 at 64 px, scaled)")
                sigma = gr.Number(value=0.875, label="blur sigma (2 at 64 px, scaled)")
            prompt = gr.Textbox(value="", label="prompt for the denoiser (empty: unconditional)")
            scale = gr.Slider(0, 20, value=1, step=0.5, label="CFG scale (1 = none)")
            seed, invert = page.seed(), page.invert()
            run = gr.Button("Noise and denoise", variant="primary", elem_id="noise-run")
        with gr.Column(scale=2):
            with gr.Row():
                labels = ("original", "noisy x_t", "Gaussian blur", "one-step", "iterative")
                outs = [
                    gr.Image(label=lab, elem_id=f"noise-out-{k}", min_width=100, height=200, **PNG)
                    for k, lab in enumerate(labels)
                ]
            info = gr.Markdown(elem_id="noise-info")
    inputs = [img, t, kernel, sigma, prompt, scale, seed, invert]
    page.wire(run, page.h.noise, inputs, [*outs, info], "noise")


def _sdedit_tab(page: Page) -> None:
    gr = page.gr
    with gr.Tab("SDEdit", id="sdedit", elem_id="tab-sdedit"), gr.Row():
        with gr.Column(scale=1):
            edit = gr.ImageEditor(
                label="upload an image, or draw one on the canvas",
                sources=["upload", "clipboard"],
                type="filepath",
                format="png",
                canvas_size=(280, 280),
                brush=gr.Brush(default_size="auto", colors=["#000000", "#ffffff"], color_mode="fixed"),
                elem_id="sdedit-in",
                height=360,
            )
            prompt = gr.Textbox(value="", label="prompt (empty: unconditional SDEdit; a class/text: image-to-image)")
            starts = gr.Textbox(value="1 3 5 7 10 20", label="i_start values", elem_id="sdedit-starts")
            scale, seed, invert = page.scale(), page.seed(), page.invert()
            run = gr.Button("SDEdit", variant="primary", elem_id="sdedit-run")
        with gr.Column(scale=2):
            out = gr.Gallery(label="results by i_start", format="png", columns=7, elem_id="sdedit-out")
            info = gr.Markdown(elem_id="sdedit-info")
    page.wire(run, page.h.sdedit, [edit, prompt, starts, scale, seed, invert], [out, info], "sdedit")


def _inpaint_tab(page: Page) -> None:
    gr = page.gr
    with gr.Tab("Inpaint", id="inpaint", elem_id="tab-inpaint"), gr.Row():
        with gr.Column(scale=1):
            edit = gr.ImageEditor(
                label="upload an image, then paint over the part to replace",
                sources=["upload", "clipboard"],
                type="filepath",
                format="png",
                brush=gr.Brush(default_size="auto", colors=["#ff0066"], color_mode="fixed"),
                elem_id="inpaint-in",
                height=360,
            )
            fallback = gr.Radio(
                ["paint it", "default mask"],
                value="paint it",
                label="when nothing is painted",
                info="default mask: the course's at 64 px (rows 2-19, cols 24-41); the top half of the digit at 28 px",
            )
            prompt = gr.Textbox(value="", label="prompt (empty: unconditional)")
            n = gr.Slider(1, 8, value=2, step=1, label="number of results")
            steps = gr.Slider(1, 100, value=30, step=1, label=STEPS_LABEL, elem_id="inpaint-steps")
            scale, seed, invert = page.scale(), page.seed(), page.invert()
            run = gr.Button("Inpaint", variant="primary", elem_id="inpaint-run")
        with gr.Column(scale=2):
            with gr.Row():
                orig = gr.Image(label="input", elem_id="inpaint-orig", **PNG)
                mask = gr.Image(label="mask (white = new content)", elem_id="inpaint-mask", **PNG)
            out = gr.Image(label="results", elem_id="inpaint-out", **PNG)
            info = gr.Markdown(elem_id="inpaint-info")
    inputs = [edit, prompt, fallback, n, steps, scale, seed, invert]
    page.wire(run, page.h.inpaint, inputs, [orig, mask, out, info], "inpaint")


def _anagram_tab(page: Page) -> None:
    from diffusionlab.views import VIEW_HELP, VIEW_NAMES

    gr = page.gr
    with gr.Tab("Anagram", id="anagram", elem_id="tab-anagram"), gr.Row():
        with gr.Column(scale=1):
            p1 = gr.Textbox(value="6", label="prompt seen upright")
            p2 = gr.Textbox(value="9", label="prompt seen under the view")
            views = [(f"{v}: {VIEW_HELP.get(v, '')}", v) for v in VIEW_NAMES]
            view = gr.Dropdown(views, value="rot180", label="view")
            n = gr.Slider(1, 8, value=4, step=1, label="number of images")
            steps = gr.Slider(1, 100, value=30, step=1, label=STEPS_LABEL, elem_id="anagram-steps")
            scale, seed = page.scale(10), page.seed()  # the illusions' measured default (docs/illusions.md)
            run = gr.Button("Make anagrams", variant="primary", elem_id="anagram-run")
        with gr.Column(scale=2):
            up = gr.Image(label="upright", elem_id="anagram-up", **PNG)
            viewed = gr.Image(label="under the view", elem_id="anagram-view", **PNG)
            info = gr.Markdown(elem_id="anagram-info")
    page.wire(run, page.h.anagram, [p1, p2, view, n, steps, scale, seed], [up, viewed, info], "anagram")


def _hybrid_tab(page: Page) -> None:
    gr = page.gr
    with gr.Tab("Hybrid", id="hybrid", elem_id="tab-hybrid"), gr.Row():
        with gr.Column(scale=1):
            low = gr.Textbox(value="0", label="prompt seen from afar (low frequencies)")
            high = gr.Textbox(value="1", label="prompt seen close up (high frequencies)")
            with gr.Row():
                # the CLI's defaults at 28 px, measured (docs/illusions.md); an empty field: the model's default
                sigma = gr.Number(value=1.5, label="sigma (1.5 at 28 px; 2 at 64 px)")
                kernel = gr.Number(value=15, precision=0, label="kernel (odd; 15 at 28 px, 33 at 64 px)")
            n = gr.Slider(1, 8, value=4, step=1, label="number of images")
            steps = gr.Slider(1, 100, value=30, step=1, label=STEPS_LABEL, elem_id="hybrid-steps")
            scale, seed = page.scale(10), page.seed()
            run = gr.Button("Make hybrids", variant="primary", elem_id="hybrid-run")
        with gr.Column(scale=2):
            near = gr.Image(label="near", elem_id="hybrid-near", **PNG)
            far = gr.Image(label="far (downscaled)", elem_id="hybrid-far", **PNG)
            info = gr.Markdown(elem_id="hybrid-info")
    inputs = [low, high, sigma, kernel, n, steps, scale, seed]
    page.wire(run, page.h.hybrid, inputs, [near, far, info], "hybrid")


def checked_blocks():
    """gr.Blocks whose own checks of the inputs, made before our handlers run (a file path that was not uploaded
    through the page, a value of the wrong form), end in a one-line message instead of an empty error on the page
    and a traceback in the server log."""
    import gradio as gr
    from gradio.exceptions import InvalidPathError
    from pydantic import ValidationError

    class CheckedBlocks(gr.Blocks):
        async def preprocess_data(self, *args, **kwargs):
            try:
                return await super().preprocess_data(*args, **kwargs)
            except InvalidPathError:
                log.warning("refused a request naming a file that was not uploaded through the page")
                message = "a file must be uploaded through this page; paths on the server are not accepted"
                raise gr.Error(message, print_exception=False) from None
            except ValidationError as e:
                log.warning("refused a request with a malformed input (%s)", e.title)
                message = "an input has the wrong form: image fields take a file uploaded through this page"
                raise gr.Error(message, print_exception=False) from None

    return CheckedBlocks


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
    limits: Limits = Limits(),  # noqa: B008 - a frozen dataclass
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
