"""The inputs of the report's Part A sections: genuine test images (or, for IF, its own samples), a drawing made
in code, and the prompts of each deliverable for the chosen model."""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageDraw
from torch import Tensor

from diffusionlab.figures.grid import show_prompt
from diffusionlab.report.context import IF_PROMPTS, Context, MissingError, SectionOut


# -- helpers -------------------------------------------------------------------------------------------------
def is_ours(m: Any) -> bool:
    """A model trained here (it has a data set), not IF."""
    return m.data is not None


def hand_drawn(image_shape: tuple[int, int, int], value_range, digit_like: bool) -> tuple[Tensor, Image.Image]:
    """A drawing made in code, as a user would with a pen: a '7' (digit models; inverted to white on black, like
    MNIST) or a simple house under a sun in colour (RGB models). Returns ((1, C, H, W), the drawing)."""
    from diffusionlab.images import pil_to_tensor

    size = 280
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    if digit_like:
        d.line([(70, 60), (215, 60), (120, 235)], fill="black", width=26, joint="curve")
        d.line([(105, 150), (185, 150)], fill="black", width=20)
    else:
        d.rectangle([0, 190, size, size], fill=(60, 150, 60))
        d.ellipse([190, 20, 260, 90], fill=(250, 200, 30))
        d.rectangle([60, 120, 180, 220], fill=(180, 60, 50))
        d.polygon([(50, 125), (120, 60), (190, 125)], fill=(90, 60, 40))
        d.rectangle([105, 165, 135, 220], fill=(70, 40, 20))
    x = pil_to_tensor(img, image_shape, value_range, invert=digit_like)
    return x, img


def test_images(ctx: Context, m: Any, out: SectionOut, k: int = 1) -> tuple[Tensor, list[str]]:
    """k genuine test images of the Part A model's data set (model range): from --data-dir or the cache, else the
    sample shipped in the package (out.inputs says which); IF, which has no test set: images it generates."""
    from diffusionlab import edits

    data = m.data
    if data:
        from diffusionlab.data import DATASETS, to_float
        from diffusionlab.imagefolder import is_image_folder

        if is_image_folder(ctx.data_dir):  # a model of an image folder: its held-out images, as the tools' test:N
            from diffusionlab.tools.inputs import load_inputs

            x, _, sources = load_inputs(m, [f"test:{i}" for i in range(k)], ctx.data_dir)
            out.inputs = sources[0]
            return x.to(m.device), [f"test {i}" for i in range(len(x))]
        if data not in DATASETS:
            raise MissingError(
                f"the test images of {data!r} (a model of an image folder): give reproduce --data-dir DIR"
            )
        images, source = ctx.test_digits(data, k)
        out.inputs = source
        return to_float(images, m.value_range).to(m.device), [f"test {i}" for i in range(len(images))]
    out.notes.append("the 'test image' is a sample of the model itself (no test set for this model)")
    prompts = (IF_PROMPTS["test"] * k)[:k]
    cond = m.encode(prompts) if any(prompts) else m.null(k)
    g = ctx.generator(1000)
    x = edits.sample(m, k, cond, generator=g, progress=False)
    return x, [f"generated {show_prompt(p)}" for p in prompts]


def prompts_for(m: Any) -> dict[str, Any]:
    """The prompts of each Part A deliverable for this model: class names for ours, the course's for IF."""
    names = list(m.class_names)
    if not is_ours(m):
        return IF_PROMPTS
    if not m.conditioned:
        return {"a0": [""], "translate": "", "anagrams": [("", "", "rot180")], "hybrids": [("", "")]}
    if names[:10] == [str(i) for i in range(10)]:
        return {
            "a0": ["0", "three", "7"],
            "translate": "3",
            "anagrams": [("6", "9", "rot180"), ("4", "7", "flip"), ("1", "0", "negate")],
            "hybrids": [("8", "1"), ("0", "7")],
        }
    k = len(names)
    return {
        "a0": [names[0], names[3 % k], names[7 % k]],
        "translate": names[9 % k],
        "anagrams": [(names[1 % k], names[3 % k], "rot180"), (names[7 % k], names[8 % k], "flip")],
        "hybrids": [(names[8 % k], names[1 % k]), (names[5 % k], names[9 % k])],
    }
