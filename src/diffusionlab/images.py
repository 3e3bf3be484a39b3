"""Image input and output at the edge: any PNG/JPEG -> a model-sized tensor, masks, saving.

Tensors are (N, C, H, W) floats in the model's value range; conversion happens only here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from diffusionlab.errors import DiffusionLabError
from diffusionlab.figures.grid import save_png, to_pil
from diffusionlab.files import regular_file

# Images are refused above this many pixels, before decoding: 40 megapixels (e.g. 8000 x 5000) is more than any
# camera picture a user would feed a 64 px model, and decodes to at most 160 MB (RGBA).
MAX_IMAGE_PIXELS = 40_000_000
# ... and above this ratio of the long side to the short one: the models take square images, so the short side is
# scaled to the model's size first, and a 1 x 39,000,000 strip (under the pixel cap) would become 28 x 1.1 billion
# pixels. A panorama is 4:1.
MAX_ASPECT = 20
# ... and when the decoded pixels would take more than this (the header's size x the bytes of its mode), checked
# before decoding; the conversions after it (8-bit grey, RGB over white) take at most about as much again.
MAX_IMAGE_BYTES = 256 * 2**20
COURSE_MASK = (2, 19, 24, 41)  # rows 2:19, cols 24:41 of a 64x64 image (the course's inpainting mask)
DIGIT_MASK = (4, 14, 4, 24)  # rows 4:14, cols 4:24 of a 28x28 digit: the top half of where MNIST's ink lies


def header_size(path: Path) -> tuple[tuple[int, int], str] | None:
    """((width, height), mode) from the file's header alone, or None when no format takes the file. Image.open would
    refuse a very large image (DecompressionBombError) without saying its size, so ask the format readers the way
    Image.open does, without that check; nothing is decoded here."""
    Image.init()
    with open(path, "rb") as fp:
        prefix = fp.read(16)
        for fmt in Image.ID:
            factory, accept = Image.OPEN[fmt]
            taken = accept(prefix) if accept else True
            if not taken or isinstance(taken, str):  # a str is Pillow's "looks like it, but unsupported"
                continue
            fp.seek(0)
            try:
                found = factory(fp, str(path))
                return found.size, found.mode
            except Exception:  # noqa: BLE001 - not this format (Image.open goes on to the next one the same way)
                continue
    return None


def check_pixels(size: tuple[int, int], label: str, max_pixels: int = MAX_IMAGE_PIXELS, mode: str = "RGBA") -> None:
    """The pixel count, the aspect ratio and the decoded bytes of an image of `size` in `mode`, before decoding."""
    w, h = size
    if w * h > max_pixels:
        raise DiffusionLabError(
            f"{label}: too large: {w} x {h} pixels (limit {max_pixels / 1e6:g} megapixels); scale it down first"
        )
    if max(w, h) > MAX_ASPECT * max(1, min(w, h)):
        raise DiffusionLabError(
            f"{label}: {w} x {h} pixels is too long and thin (more than {MAX_ASPECT}:1); the models take square "
            "images, crop it first"
        )
    decoded = w * h * _bytes_per_pixel(mode)
    if decoded > MAX_IMAGE_BYTES:
        raise DiffusionLabError(
            f"{label}: {w} x {h} pixels in mode {mode} would take {decoded / 2**20:.0f} MB decoded (memory budget "
            f"{MAX_IMAGE_BYTES / 2**20:.0f} MB); scale it down first"
        )


def _bytes_per_pixel(mode: str) -> int:
    """What Pillow holds per pixel of `mode` (1-bit images are stored a byte a pixel; I;16 two, I and F four)."""
    if mode.startswith("I;16"):
        return 2
    try:
        return Image.getmodebands(mode) * (4 if mode in ("I", "F") else 1)
    except (KeyError, ValueError):
        return 4  # a mode Pillow does not list: count it as RGBA


def open_image(path: str | Path, label: str | None = None, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """A user's image file -> a decoded PIL image (EXIF rotation applied), or one line saying why not.

    The pixel count is checked from the header before anything is decoded (a 20000 x 20000 PNG of a few kB would
    take 400 MB and more); the CLI, the library and the web UI (with its own limit) all open images here."""
    p = Path(path)
    label = label or str(p)
    if not p.exists():
        raise DiffusionLabError(f"{label}: no such image file")
    regular_file(p, label)  # a named pipe would block the open below, /dev/zero never end
    try:
        found = header_size(p)
        if found is not None:
            check_pixels(found[0], label, max_pixels, found[1])
        with Image.open(p) as img:
            check_pixels(img.size, label, max_pixels, img.mode)
            img.load()
            return eight_bit(ImageOps.exif_transpose(img))
    except DiffusionLabError:
        raise
    except Image.DecompressionBombError:  # Pillow's own limit, should a header reader above have missed it
        raise DiffusionLabError(f"{label}: too large (limit {max_pixels / 1e6:g} megapixels)") from None
    except Exception as e:  # noqa: BLE001 - whatever a decoder raises on a broken file is the file's problem
        why = type(e).__name__ if isinstance(e, UnidentifiedImageError) else f"{type(e).__name__}: {_first_line(e)}"
        raise DiffusionLabError(
            f"cannot read {label}: not a picture Pillow can read ({why}); use a PNG or JPEG file"
        ) from None


def eight_bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey images (a 16-bit PNG opens as I;16 or I) -> 8-bit L, scaled. Pillow's own convert
    clips at 255, which turns every 16-bit picture white."""
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        top = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0  # floats in [0, 1], or in 8-bit units
        return Image.fromarray((np.clip(arr / top, 0, 1) * 255).round().astype(np.uint8), "L")
    if img.mode.startswith("I"):
        arr = np.asarray(img).astype(np.int64)
        shift = 8 if arr.max(initial=0) > 255 else 0  # a 16-bit image; an 8-bit one stored as I is kept
        return Image.fromarray((np.clip(arr, 0, 65535) >> shift).clip(0, 255).astype(np.uint8), "L")
    return img


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:120]


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Transparent pixels become white (a drawing on a transparent canvas is a drawing on white paper)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img


def resize_crop(img: Image.Image, height: int, width: int) -> Image.Image:
    """Resize so the short side fits, then crop the centre to height x width."""
    w, h = img.size
    s = max(height / h, width / w)
    nw, nh = max(width, round(w * s)), max(height, round(h * s))
    img = img.resize((nw, nh), Image.LANCZOS if s < 1 else Image.BICUBIC)
    left, top = (nw - width) // 2, (nh - height) // 2
    return img.crop((left, top, left + width, top + height))


def pil_to_tensor(img: Image.Image, image_shape: tuple[int, int, int], value_range=(0.0, 1.0), invert=False) -> Tensor:
    """A PIL image of any mode and size -> (1, C, H, W) in value_range."""
    c, h, w = image_shape
    img = _flatten_alpha(img).convert("L" if c == 1 else "RGB")
    img = resize_crop(img, h, w)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if invert:
        arr = 1.0 - arr
    t = torch.from_numpy(arr.copy())
    t = t.unsqueeze(0) if c == 1 else t.permute(2, 0, 1)
    lo, hi = value_range
    return (t * (hi - lo) + lo).unsqueeze(0)


def load_image(
    path: str | Path, image_shape: tuple[int, int, int], value_range=(0.0, 1.0), invert: bool = False
) -> Tensor:
    """PNG/JPEG of any mode and size -> (1, C, H, W) at the model's size and channels (short-side resize + centre
    crop), in its value range. invert=True turns a black-on-white drawing into MNIST's white on black."""
    return pil_to_tensor(open_image(path), image_shape, value_range, invert)


def default_mask(image_shape: tuple[int, int, int]) -> Tensor:
    """The default inpainting mask, (1, 1, H, W), 1 = new content. At 64 px and above: the course's (rows 2:19,
    cols 24:41 at 64x64), scaled. Below (our 28-px digits): the top half of the digit box, rows 4:14, cols 4:24
    at 28 px (DIGIT_MASK). The course's mask scaled to 28 px lies on the background: it covers 10 % of the ink of
    the 100 shipped test digits (>= 20 % of it in 6 of them), DIGIT_MASK 46 % (>= 20 % in all 100), so the
    inpainting figure shows something inpainted."""
    _, h, w = image_shape
    (r0, r1, c0, c1), size = (COURSE_MASK, 64) if h >= 64 else (DIGIT_MASK, 28)
    return rect_mask(
        image_shape, round(r0 * h / size), round(r1 * h / size), round(c0 * w / size), round(c1 * w / size)
    )


def rect_mask(image_shape: tuple[int, int, int], r0: int, r1: int, c0: int, c1: int) -> Tensor:
    """1 in rows r0:r1 and cols c0:c1 (Python slices), 0 elsewhere."""
    _, h, w = image_shape
    if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
        raise DiffusionLabError(
            f"mask rect:{r0}:{r1}:{c0}:{c1} does not fit {h}x{w} images (need 0 <= r0 < r1 <= {h}, 0 <= c0 < c1 <= {w})"
        )
    m = torch.zeros(1, 1, h, w)
    m[..., r0:r1, c0:c1] = 1.0
    return m


def load_mask(spec: str | Path, image_shape: tuple[int, int, int]) -> Tensor:
    """A mask (1, 1, H, W) of 0/1, 1 (white) = where new content goes. spec: an image file of exactly the model's
    size, `default` (the course mask scaled), or `rect:r0:r1:c0:c1` (Python slices)."""
    s = str(spec)
    if s == "default":
        return default_mask(image_shape)
    if s.startswith("rect:"):
        parts = s.split(":")[1:]
        try:
            r0, r1, c0, c1 = (int(p) for p in parts)
        except ValueError:
            raise DiffusionLabError(f"mask {s!r}: expected rect:r0:r1:c0:c1 with four integers") from None
        return rect_mask(image_shape, r0, r1, c0, c1)
    img = _flatten_alpha(open_image(s)).convert("L")
    _, h, w = image_shape
    if img.size != (w, h):
        raise DiffusionLabError(
            f"{s}: mask is {img.size[1]}x{img.size[0]} (h x w) but the model's images are {h}x{w}; "
            "draw it at that size, or use rect:r0:r1:c0:c1 / default"
        )
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy((arr >= 0.5).astype(np.float32)).view(1, 1, h, w)


def save_image(image: Tensor, path: str | Path, value_range=(0.0, 1.0)) -> Path:
    """One image (C, H, W) or (1, C, H, W) -> PNG (atomic write)."""
    if image.dim() == 4:
        image = image[0]
    return save_png(to_pil(image, value_range), path)
