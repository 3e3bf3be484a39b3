"""The illusions' tabs: visual anagrams with 2-4 readings (a prompt for each, a view for each after the first) and
hybrid images, both with verified best-of-K (candidates ranked by the shipped classifier)."""

from __future__ import annotations

from diffusionlab.app.illusions import LOWPASS_CHOICES, MAX_BEST_OF, MAX_READINGS
from diffusionlab.app.page import PNG, Page

BEST_OF_INFO = (
    "K candidates per image in one batch; the shipped ranker (three classifiers) keeps one it reads as every "
    "prompt, surest of its weaker reading"
)
ANAGRAM_CAPTION = (
    "Each row shows the same images: upright (prompt 1), then through each view (prompt 2, 3, 4); the label at "
    "its left names the prompt and the view. An anagram "
    "works when every row reads as its prompt: each image is framed **green** where the shipped ranker reads it "
    "as asked and **red** where not, and the settings say how many images read as asked and which reading "
    "failed. The examples give the rate a held-out judge measured for them (docs/illusions.md); the last one, "
    "four digits under four views, is a measured failure case."
)
HYBRID_CAPTION = (
    "**near**: the images at full size read as the close-up prompt (high frequencies); **far**: the same images "
    "small, as from a distance, read as the far prompt (low frequencies). Framed **green** where the ranker reads "
    "the image (near) or its low-pass (far) as asked, **red** where not: at 28 px most hybrids fail "
    "(docs/illusions.md), and the settings say so."
)
# (readings, prompt 1..4, view 2..4) and a label with the rate a held-out judge measured (docs/illusions.md,
# "Showcase"): pairs that work, not 6/9 (a 6 turned over is a 9); the last, four digits, a labelled failure case
ANAGRAM_EXAMPLES = [
    ([2, "3", "8", "", "", "rot180", "rot90", "rot270"], "3 / 8 · rot180 · judge: 4 of 4 at seed 0"),
    ([2, "2", "7", "", "", "flip", "rot90", "rot270"], "2 / 7 · flip · judge: 4 of 4 at seed 0"),
    ([3, "2", "6", "7", "", "rot90", "rot180", "rot270"], "2 / 6 / 7 · rot90, rot180 · three views: 28 %"),
    (
        [4, "1", "7", "4", "0", "rot90", "rot180", "rot270"],
        "1 / 7 / 4 / 0 · rot90, rot180, rot270 · fails: 12 %",
    ),
]
# at 28 px most hybrids fail (24 % by the held-out judge): the pairs it reads best, with their rates
HYBRID_EXAMPLES = [
    (["1", "8"], "far 1, near 8 · judge: 8 of 8 (N = 8), 4 of 4 at seed 0"),
    (["7", "8"], "far 7, near 8 · judge: 8 of 8 (N = 8), 4 of 4 at seed 0 (the ranker: 2 of 4)"),
]

WEIGHTS_INFO = "one per prompt, relative, e.g. 1,2: more of the steps for a reading that the others drown (a thin 1)"
BALANCE_INFO = "the shipped ranker watches each reading while sampling and gives more steps to the one it does not see yet (our class models)"


def view_choices() -> list[str]:
    """The anagram tab's views, from the table in views.py."""
    from diffusionlab.views import VIEWS

    return list(VIEWS)


def anagram_tab(page: Page) -> None:
    from diffusionlab.views import views_markdown

    gr = page.gr
    views = view_choices()
    with gr.Tab("Anagram", id="anagram", elem_id="tab-anagram"), gr.Row():
        with gr.Column(scale=1):
            readings = gr.Radio(
                list(range(2, MAX_READINGS + 1)),
                value=2,
                label="readings",
                info="prompt 1 upright; each later prompt seen through its own view",
                elem_id="anagram-readings",
            )
            prompts = [gr.Textbox(value="6", label="prompt 1 (upright)", elem_id="anagram-p1")]
            view_boxes, rows = [], []
            for k, (p, v) in enumerate([("9", "rot180"), ("4", "rot180"), ("0", "rot270")], start=2):  # 6/9, rot180
                with gr.Row(visible=k == 2) as row:
                    prompts.append(gr.Textbox(value=p, label=f"prompt {k}", elem_id=f"anagram-p{k}", scale=1))
                    view_boxes.append(gr.Dropdown(views, value=v, label=f"view {k}", elem_id=f"anagram-v{k}", scale=2))
                rows.append(row)
            n = gr.Slider(1, 8, value=4, step=1, label="number of images", elem_id="anagram-n")
            best_of = gr.Slider(1, MAX_BEST_OF, value=1, step=1, label="best-of K", info=BEST_OF_INFO,
                                elem_id="anagram-best-of")  # fmt: skip
            weights = gr.Textbox(value="", label="weights (optional)", info=WEIGHTS_INFO, elem_id="anagram-weights")
            balance = gr.Checkbox(value=True, label="reading balance", info=BALANCE_INFO, elem_id="anagram-balance")
            scale, seed = page.scale(10), page.seed()  # the illusions' measured default (docs/illusions.md)
            run = gr.Button("Make anagrams", variant="primary", elem_id="anagram-run")
            gr.Examples(
                [row for row, _ in ANAGRAM_EXAMPLES],
                [readings, *prompts, *view_boxes],
                label="examples (measured rate)",
                elem_id="anagram-examples",
                example_labels=[label for _, label in ANAGRAM_EXAMPLES],
            )
        with gr.Column(scale=2):
            out = gr.Image(label="readings", elem_id="anagram-out", **PNG)
            gr.Markdown(ANAGRAM_CAPTION, elem_id="anagram-caption")
            with gr.Accordion("the views", open=False):
                gr.Markdown(views_markdown())
            info = gr.Markdown(elem_id="anagram-info")
    readings.change(
        lambda c: [gr.Row(visible=k <= int(c)) for k in range(2, MAX_READINGS + 1)],
        readings,
        rows,
        api_name=False,
        queue=False,
    )
    inputs = [readings, *prompts, *view_boxes, n, scale, seed, best_of, weights, balance]
    page.wire(run, page.h.anagram, inputs, [out, info], "anagram")


def hybrid_tab(page: Page) -> None:
    gr = page.gr
    with gr.Tab("Hybrid", id="hybrid", elem_id="tab-hybrid"), gr.Row():
        with gr.Column(scale=1):
            low = gr.Textbox(value="1", label="prompt seen from afar (low frequencies)")
            high = gr.Textbox(value="8", label="prompt seen close up (high frequencies)")
            # the model's measured low-pass (ours: the far view's own filter with the reading balance,
            # docs/illusions.md), or a Gaussian with the two numbers below, as the CLI's --sigma/--kernel
            lowpass = gr.Dropdown(LOWPASS_CHOICES, value=LOWPASS_CHOICES[0], label="low-pass", elem_id="hybrid-lowpass")
            with gr.Row():
                sigma = gr.Number(value=1.5, label="Gaussian sigma (1.5 at 28 px; 2 at 64 px)")
                kernel = gr.Number(value=15, precision=0, label="Gaussian kernel (odd; 15 at 28 px, 33 at 64 px)")
            n = gr.Slider(1, 8, value=4, step=1, label="number of images", elem_id="hybrid-n")
            best_of = gr.Slider(1, MAX_BEST_OF, value=1, step=1, label="best-of K", info=BEST_OF_INFO,
                                elem_id="hybrid-best-of")  # fmt: skip
            scale, seed = page.scale(10), page.seed()
            run = gr.Button("Make hybrids", variant="primary", elem_id="hybrid-run")
            gr.Examples(
                [row for row, _ in HYBRID_EXAMPLES],
                [low, high],
                label="examples: far, near (measured rate)",
                example_labels=[label for _, label in HYBRID_EXAMPLES],
            )
        with gr.Column(scale=2):
            near = gr.Image(label="near", elem_id="hybrid-near", **PNG)
            far = gr.Image(label="far (downscaled)", elem_id="hybrid-far", **PNG)
            gr.Markdown(HYBRID_CAPTION, elem_id="hybrid-caption")
            info = gr.Markdown(elem_id="hybrid-info")
    inputs = [low, high, sigma, kernel, n, scale, seed, best_of, lowpass]
    page.wire(run, page.h.hybrid, inputs, [near, far, info], "hybrid")
