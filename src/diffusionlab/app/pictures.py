"""The page's pictures <-> the model's tensors: every image conversion of the web UI, one function per direction.

to_tensor: a picture from the page (upload, drawing, editor background) -> (1, C, H, W) in the model's value range
and size. to_picture: an image (or a row of them) in the model's value range -> a PIL picture, upscaled for the screen
(nearest neighbour: the pixels as the model sees them). to_mask: the editor's brush strokes -> a 0/1 mask. The
handlers, the test-image picker and the result PNGs convert only through these."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def flatten(im: Image.Image, background: str = "white") -> Image.Image:
    """RGBA -> RGB over a background (drawings on a transparent canvas)."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        base = Image.new("RGBA", im.size, background)
        return Image.alpha_composite(base, im).convert("RGB")
    return im.convert("RGB")


def to_tensor(im: Image.Image, model, invert: str = "auto") -> Tensor:
    """A picture -> (1, C, H, W) in the model's value range and size (images.py's loader: resize + centre crop),
    on the model's device.

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


def display_scale(h: int) -> int:
    """How much a picture of height h is upscaled on the page: to about 224 px."""
    return max(1, 224 // h)


def to_picture(x: Tensor, model, scale: int | None = None, pad: int = 4) -> Image.Image:
    """An image in the model's value range -> a picture (clamped to the range), upscaled `scale` times (default:
    display_scale). x: one (C, H, W) image, or (N, C, H, W): side by side, `pad` pixels apart, on white."""
    from diffusionlab.figures.grid import to_pil

    if x.dim() == 4:
        ims = [to_picture(one, model, scale) for one in x]
        canvas = Image.new(
            "RGB", (sum(i.width for i in ims) + pad * (len(ims) - 1), max(i.height for i in ims)), "white"
        )
        for k, im in enumerate(ims):
            canvas.paste(im.convert("RGB"), (sum(i.width + pad for i in ims[:k]), 0))
        return canvas
    im = to_pil(x.detach().cpu(), model.value_range)
    k = display_scale(x.shape[-2]) if scale is None else scale
    return im if k == 1 else im.resize((im.width * k, im.height * k), Image.Resampling.NEAREST)


def to_mask(layers: list[Image.Image], size: tuple[int, int], model) -> Tensor | None:
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
