"""What every tab shares (`Page`): gradio, the handlers, the model chooser, the sliders ranged by the model, the
test-image pickers, and the wiring of a button to its handler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffusionlab.app.handlers import Handlers, user_errors
from diffusionlab.app.registry import Limits

HEAVY = {"concurrency_id": "models", "concurrency_limit": 2, "preprocess": False, "show_progress": "full"}
SEED_HELP = "seed (-1: a random one, shown with the result)"
PNG = {"format": "png", "buttons": ["download", "fullscreen"], "interactive": False}
INVERT_CHOICES = ["auto", "yes", "no"]
INVERT_INFO = "MNIST models want light strokes on dark: 'auto' inverts light pictures"
PICK_INFO = "a genuine test image of the model's data set (no upload needed); your own upload or drawing replaces it"


@dataclass(frozen=True)
class Page:
    """What every tab needs: gradio, the handlers, the model chooser and the limits."""

    gr: Any
    h: Handlers
    model: Any
    limits: Limits
    num_steps: int = 300  # T of the model chosen at start; the sliders below follow the chooser
    model_value: str | None = None  # the model chosen at start
    ranged: list = field(default_factory=list)  # (slider, "t" | "steps" | "cfg"): follow the chosen model
    pickers: list = field(default_factory=list)  # (picker, image field, is an editor): follow the chooser too

    def slider_t(self, value: int, **kw):
        s = self.gr.Slider(0, self.num_steps - 1, value=min(value, self.num_steps - 1), step=1, **kw)
        self.ranged.append((s, "t"))
        return s

    def slider_steps(self, **kw):
        """Sampling steps, starting at the chosen model's default (its kind's, as the API's and the CLI's)."""
        value = self.h.sample_steps(self.model_value)
        s = self.gr.Slider(1, max(self.num_steps, value), value=value, step=1, **kw)
        self.ranged.append((s, "steps"))
        return s

    def editor(self, label: str, colors: list[str], elem_id: str, **kw):
        """An image editor (a picked test image, an upload or the clipboard) painted with a brush of `colors`."""
        gr = self.gr
        brush = gr.Brush(default_size="auto", colors=colors, color_mode="fixed")
        return gr.ImageEditor(
            label=label, sources=["upload", "clipboard"], type="filepath", format="png", brush=brush, elem_id=elem_id,
            height=360, **kw,
        )  # fmt: skip

    def wire(self, button, fn, inputs: list, outputs: list, api_name: str) -> None:
        """button runs fn(model, *inputs) -> outputs, with a progress bar, user errors as one line, API name."""
        gr = self.gr

        def run(*args, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - Gradio's idiom
            return fn(*args)

        run.__name__ = fn.__name__
        # progress and an error's badge go on the settings line (the last output), never over the images, so a
        # failed request leaves the last results in view; the one-line message is a toast that fades by itself
        button.click(
            user_errors(run), [self.model, *inputs], outputs, api_name=api_name, show_progress_on=outputs[-1], **HEAVY
        )

    def seed(self, **kw):
        return self.gr.Number(value=0, precision=0, label=SEED_HELP, **kw)

    def scale(self, value: float | None = None, **kw):
        """CFG scale: `value` (a tool's own measured default, e.g. the illusions'), else the chosen model's default
        (measured and stored with it, else its kind's), which the slider then follows."""
        start = self.h.guidance_scale(self.model_value) if value is None else value
        s = self.gr.Slider(0, 20, value=start, step=0.5, label="CFG scale", **kw)
        if value is None:
            self.ranged.append((s, "cfg"))
        return s

    def invert(self):
        return self.gr.Radio(INVERT_CHOICES, value="auto", label="invert", info=INVERT_INFO)

    # -- the test-image picker -------------------------------------------------------------------------------
    def picker(self, value: str, elem_id: str):
        """A dropdown of the chosen model's test images (value: the index as text, "" for none)."""
        choices = self.h.test_choices(self.model_value)
        value = value if value in {v for _, v in choices} else ""
        return self.gr.Dropdown(choices, value=value, label="test image", info=PICK_INFO, elem_id=elem_id)

    def picture(self, pick):
        """An image field's first value: the picked test image (as a picture), or empty."""
        return self.h.test_picture(self.model_value, pick.value)

    def link_picker(self, pick, target, tab=None) -> None:
        """Picking a test image shows it in the target field. An image field: an upload or a clear drops the pick.
        An image editor (tab given): it gets the picked picture when its tab opens with the editor empty (an editor
        in a hidden tab does not draw a first value), and its own events never touch the pick (it fires upload on
        a picture set by the server); the handlers tell a test picture from an upload by its file name."""
        gr, h, editor = self.gr, self.h, tab is not None

        def show(model_value, value):
            path = h.test_picture(model_value, value)
            if editor:
                return {"background": path, "layers": [], "composite": path} if path else None
            return path

        pick.change(user_errors(show), [self.model, pick], target, api_name=False, queue=False)
        if editor:

            def fill_if_empty(model_value, value, current):
                if current and (current.get("background") or current.get("composite")):
                    return gr.skip()
                return show(model_value, value)

            tab.select(user_errors(fill_if_empty), [self.model, pick, target], target, api_name=False, queue=False)
        else:
            for event in (target.upload, target.clear):
                event(lambda: "", None, pick, api_name=False, queue=False)
        self.pickers.append((pick, target, show))

    def follow_model(self) -> None:
        """The chooser changes: sliders ranged by the new model's T, pickers offer its test set (and reshow)."""
        gr, h = self.gr, self.h

        def ranges(model_value):  # steps and CFG sliders also move to the model's defaults, as the API's and CLI's
            T, steps, scale = h.num_steps(model_value), h.sample_steps(model_value), h.guidance_scale(model_value)
            new = {
                "t": lambda: gr.Slider(maximum=T - 1),
                "steps": lambda: gr.Slider(maximum=max(T, steps), value=steps),
                "cfg": lambda: gr.Slider(value=scale),
            }
            return [new[kind]() for _, kind in self.ranged]

        if self.ranged:
            self.model.change(ranges, self.model, [s for s, _ in self.ranged], api_name=False, queue=False)
        for pick, target, show in self.pickers:

            def repick(model_value, value, show=show):
                choices = h.test_choices(model_value)
                value = value if value in {v for _, v in choices} else ""
                return gr.Dropdown(choices=choices, value=value), show(model_value, value)

            self.model.change(user_errors(repick), [self.model, pick], [pick, target], api_name=False, queue=False)
