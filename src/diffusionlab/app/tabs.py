"""The tabs of Part A's sampling and image tools: Generate, Noise & denoise, SDEdit, Inpaint. Each image tab opens
on a genuine test image (the picker), so one click shows a result; examples fill the form with tried settings."""

from __future__ import annotations

from diffusionlab.app.page import PNG, Page
from diffusionlab.steps import SAMPLERS

NOISE_CAPTION = (
    "**original**: the image as the model sees it · **noisy**: x_t, the forward process at t · **blur**: a Gaussian "
    "blur of x_t (classical denoising) · **one-step**: the model's estimate of x_0 from x_t in one step · "
    "**iterative**: strided DDPM denoising from the strided timestep nearest t (shown under the results)."
)
SDEDIT_CAPTION = (
    "**input**: the image as the model sees it. **i=k · t=T**: the input noised to the k-th of the strided "
    "timesteps (t = T), then denoised with the prompt and CFG. A small i starts from more noise and edits more "
    "freely; a large i stays close to the input."
)
INPAINT_CAPTION = (
    "New content where the mask is white, the original (exactly) elsewhere. Paint over the part to replace; with "
    "nothing painted, the default mask is the top half of the digit at 28 px (the course's mask at 64 px)."
)


def sampler_choices() -> list[tuple[str, str]]:
    """The Generate tab's step rules, from the table in steps.py ("" = the model's own default)."""
    return [("the model's default", ""), *((f"{name}: {entry.help}", name) for name, entry in SAMPLERS.items())]


def generate_tab(page: Page) -> None:
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
            steps = page.slider_steps(label="steps (default: the model's, as the API's)", elem_id="gen-steps")
            scale = page.scale(elem_id="gen-cfg")
            sampler = gr.Dropdown(sampler_choices(), value="", label="sampler (step rule)", elem_id="gen-sampler")
            seed = page.seed(elem_id="gen-seed")
            run = gr.Button("Generate", variant="primary", elem_id="gen-run")
            gr.Examples(
                [["0, 1, 2, 3, 4, 5, 6, 7, 8, 9", 4, 5], ["3, 7", 8, 5], ["8", 8, 0], ["sneaker, bag, dress", 4, 5]],
                [prompts, n, scale],
                label="examples (the last one for Fashion-MNIST models)",
            )
        with gr.Column(scale=2):
            out = gr.Gallery(
                label="samples", format="png", columns=4, elem_id="gen-out", buttons=["download", "download_all"]
            )
            info = gr.Markdown(elem_id="gen-info")
    page.wire(run, page.h.generate, [prompts, n, steps, scale, seed, sampler], [out, info], "generate")


def noise_tab(page: Page) -> None:
    gr = page.gr
    with gr.Tab("Noise & denoise", id="noise", elem_id="tab-noise"), gr.Row():
        with gr.Column(scale=1):
            pick = page.picker("0", "noise-pick")
            img = gr.Image(
                value=page.picture(pick),
                label="image",
                type="filepath",
                sources=["upload", "clipboard"],
                elem_id="noise-in",
                height=240,
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
            gr.Examples([["0", 140], ["1", 190], ["7", 90], ["4", 240]], [pick, t], label="examples: test image, t")
        with gr.Column(scale=2):
            with gr.Row():
                labels = ("original", "noisy", "blur", "one-step", "iterative")
                outs = [
                    gr.Image(label=lab, elem_id=f"noise-out-{k}", min_width=100, height=200, **PNG)
                    for k, lab in enumerate(labels)
                ]
            gr.Markdown(NOISE_CAPTION, elem_id="noise-caption")
            info = gr.Markdown(elem_id="noise-info")
    page.link_picker(pick, img)
    inputs = [img, t, kernel, sigma, prompt, scale, seed, invert, pick]
    page.wire(run, page.h.noise, inputs, [*outs, info], "noise")


def sdedit_tab(page: Page) -> None:
    gr = page.gr
    with gr.Tab("SDEdit", id="sdedit", elem_id="tab-sdedit") as tab, gr.Row():
        with gr.Column(scale=1):
            pick = page.picker("1", "sdedit-pick")
            label = "a test image, an upload, or a drawing (clear the canvas to draw)"
            edit = page.editor(label, ["#000000", "#ffffff"], "sdedit-in", canvas_size=(280, 280))
            prompt = gr.Textbox(value="", label="prompt (empty: unconditional SDEdit; a class/text: image-to-image)")
            starts = gr.Textbox(value="1 3 5 7 10 20", label="i_start values", elem_id="sdedit-starts")
            scale, seed, invert = page.scale(), page.seed(), page.invert()
            run = gr.Button("SDEdit", variant="primary", elem_id="sdedit-run")
            gr.Examples(
                [["1", "", "1 3 5 7 10 20"], ["0", "1", "5 10 15 20 25"], ["4", "9", "5 10 15 20 25"]],
                [pick, prompt, starts],
                label="examples: test image, prompt (image-to-image), i_start values",
            )
        with gr.Column(scale=2):
            out = gr.Gallery(label="results by i_start", format="png", columns=4, elem_id="sdedit-out")
            gr.Markdown(SDEDIT_CAPTION, elem_id="sdedit-caption")
            info = gr.Markdown(elem_id="sdedit-info")
    page.link_picker(pick, edit, tab)
    page.wire(run, page.h.sdedit, [edit, prompt, starts, scale, seed, invert, pick], [out, info], "sdedit")


def inpaint_tab(page: Page) -> None:
    gr = page.gr
    with gr.Tab("Inpaint", id="inpaint", elem_id="tab-inpaint") as tab, gr.Row():
        with gr.Column(scale=1):
            pick = page.picker("0", "inpaint-pick")
            edit = page.editor("paint over the part to replace", ["#ff0066"], "inpaint-in")
            fallback = gr.Radio(
                ["default mask", "paint it"],
                value="default mask",
                label="when nothing is painted",
                info="default mask: the course's at 64 px (rows 2-19, cols 24-41); the top half of the digit at 28 px",
            )
            prompt = gr.Textbox(value="", label="prompt (empty: unconditional)")
            n = gr.Slider(1, 8, value=2, step=1, label="number of results", elem_id="inpaint-n")
            scale, seed, invert = page.scale(), page.seed(), page.invert()
            run = gr.Button("Inpaint", variant="primary", elem_id="inpaint-run")
            gr.Examples(
                [["0", ""], ["3", ""], ["0", "1"], ["9", "4"]], [pick, prompt], label="examples: test image, prompt"
            )
        with gr.Column(scale=2):
            with gr.Row():
                orig = gr.Image(label="input", elem_id="inpaint-orig", **PNG)
                mask = gr.Image(label="mask (white = new)", elem_id="inpaint-mask", **PNG)
            out = gr.Image(label="results", elem_id="inpaint-out", **PNG)
            gr.Markdown(INPAINT_CAPTION, elem_id="inpaint-caption")
            info = gr.Markdown(elem_id="inpaint-info")
    page.link_picker(pick, edit, tab)
    inputs = [edit, prompt, fallback, n, scale, seed, invert, pick]
    page.wire(run, page.h.inpaint, inputs, [orig, mask, out, info], "inpaint")
