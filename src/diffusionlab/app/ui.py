"""The Gradio page (`build_app`) and its launch (`serve`); Gradio is imported only inside these functions."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from diffusionlab.app.handlers import Handlers, user_errors
from diffusionlab.app.inputs import Outputs
from diffusionlab.app.registry import Limits, ModelRegistry
from diffusionlab.errors import DiffusionLabError

log = logging.getLogger("diffusionlab.app")


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

    with checked_blocks()(title="diffusionlab", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
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
