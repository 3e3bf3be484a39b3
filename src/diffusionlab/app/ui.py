"""The Gradio page (`build_app`) and its launch (`serve`); Gradio is imported only inside these functions."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from diffusionlab.app.handlers import Handlers
from diffusionlab.app.illusion_tabs import anagram_tab, hybrid_tab
from diffusionlab.app.inputs import Outputs, url_in, url_message
from diffusionlab.app.page import Page
from diffusionlab.app.registry import Limits, ModelRegistry
from diffusionlab.app.tabs import generate_tab, inpaint_tab, noise_tab, sdedit_tab
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

    registry = ModelRegistry(runs_dir, device, extra_models, limits)
    h = Handlers(registry, limits, Outputs(Path(output_dir) if output_dir else None))
    with checked_blocks()(title="diffusionlab", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "## diffusionlab\nDiffusion models as an image tool: sampling with CFG, noising and denoising, SDEdit, "
            "inpainting, visual anagrams and hybrid images. The image tabs open on a genuine test image of the model's "
            "data set (pick another, or upload or draw your own). Every result is a PNG (download button on the image) "
            "with its settings and seed written under it and inside the file."
        )
        chooser = _model_chooser(gr, registry, default_model)
        start = registry.default(default_model)
        page = Page(gr, h, chooser, limits, h.num_steps(start), start)
        with gr.Tabs():
            for tab in (generate_tab, noise_tab, sdedit_tab, inpaint_tab, anagram_tab, hybrid_tab):
                tab(page)
        page.follow_model()
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=2)
    demo.diffusionlab_handlers = h  # for tests and scripts
    return demo


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


def checked_blocks():
    """gr.Blocks whose own checks of the inputs, made before our handlers run (a file path that was not uploaded
    through the page, a value of the wrong form, too few values), end in a one-line message instead of an empty error on the page
    and a traceback in the server log."""
    import gradio as gr
    from gradio.exceptions import InvalidPathError
    from pydantic import ValidationError

    class CheckedBlocks(gr.Blocks):
        async def preprocess_data(self, *args, **kwargs):
            url = url_in(
                [*args[1:2], kwargs.get("inputs")]
            )  # (block_fn, inputs, ...): refused before Gradio fetches it
            if url:
                log.warning("refused a request giving a URL where a file is expected")
                raise gr.Error(url_message(url), print_exception=False)
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
            except ValueError as e:
                if "input values" not in str(e):
                    raise
                first = str(e).splitlines()[0]  # "An event handler (noise) didn't receive enough input values (...)"
                log.warning("refused a request: %s", first)
                raise gr.Error(
                    f"wrong number of inputs: {first}; see the page's API description", print_exception=False
                ) from None

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
