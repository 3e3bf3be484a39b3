"""The files of the bad-input corpus (tests/test_bad_inputs.py), all made here from nothing: images and masks (bad,
and odd but good), IDX data sets with one broken file, broken checkpoints, pickles posing as checkpoints, and
DeepFloyd IF folders with one thing wrong."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from conftest import make_checkpoint, make_idx_dir
from PIL import Image

from diffusionlab.checkpoint import WEIGHTS_NAME
from diffusionlab.data import write_idx


# -- images ---------------------------------------------------------------------------------------------------
def _png(width: int, height: int, idat: bytes, bit_depth: int = 1, colour: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid 1-bit PNG of width x height, all black: about 48 kB on disk, 400 MB and more once decoded."""
    packer = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte + the packed bits
    path.write_bytes(_png(width, height, b"".join(packer.compress(row) for _ in range(height)) + packer.flush()))
    return path


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says width x height and whose pixel data is missing: refused on the header alone."""
    path.write_bytes(_png(width, height, zlib.compress(b"\0" * 64), bit_depth=8))
    return path


def bomb_gif(path: Path, width: int = 30000, height: int = 30000) -> Path:
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x4c\x01\x00"
    path.write_bytes(b"GIF89a" + screen + frame + b"\x3b")
    return path


def digit(size: int = 28) -> np.ndarray:
    """A white bar on black, MNIST-like."""
    a = np.zeros((size, size), np.uint8)
    a[size // 5 : 4 * size // 5, 3 * size // 7 : 4 * size // 7] = 255
    return a


def image_files(d: Path) -> dict[str, Path]:
    """name -> file: the good digit, broken images, odd but readable ones, and bombs."""
    d.mkdir(parents=True, exist_ok=True)
    f = {"digit": d / "digit.png"}
    Image.fromarray(digit()).save(f["digit"])
    good = f["digit"].read_bytes()
    f |= {"truncated": d / "truncated.png", "zero": d / "zero.png", "text": d / "text.png"}
    f["truncated"].write_bytes(good[: len(good) // 2])
    f["zero"].write_bytes(b"")
    f["text"].write_text("this is a text file renamed .png\n")
    f["html_jpg"] = d / "page.jpg"
    f["html_jpg"].write_text("<html><body>not a picture</body></html>\n")
    f["bad_crc"] = d / "bad_crc.png"
    f["bad_crc"].write_bytes(good[:29] + bytes([good[29] ^ 0xFF]) + good[30:])  # a flipped byte in the IHDR CRC
    f["bomb"] = bomb_png(d / "bomb.png")
    f["bomb_100mp"] = header_only_png(d / "bomb_100mp.png", 10000, 10000)  # where Pillow itself only warns
    f["just_over"] = header_only_png(d / "just_over.png", 8000, 5001)  # 40.008 megapixels
    f["bomb_gif"] = bomb_gif(d / "bomb.gif")
    # odd but good: each opens and is converted to the model's one grey channel
    a16 = (digit().astype(np.uint16) * 257 // 2).astype(np.uint16)  # 16-bit, white at half scale (32767)
    Image.fromarray(a16).save(f.setdefault("16bit", d / "16bit.png"))
    pal = Image.fromarray(digit()).convert("P")
    pal.save(f.setdefault("palette", d / "palette.png"))
    Image.fromarray(digit()).convert("CMYK").save(f.setdefault("cmyk", d / "cmyk.jpg"))
    frames = [Image.fromarray(digit()), Image.new("L", (28, 28), 128)]
    frames[0].save(f.setdefault("animated", d / "animated.gif"), save_all=True, append_images=frames[1:], loop=0)
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = digit()  # black strokes on a transparent canvas: a drawing
    Image.fromarray(rgba, "RGBA").save(f.setdefault("alpha", d / "alpha.png"))
    Image.fromarray(digit()).save(f.setdefault("png_named_jpg", d / "png.jpg"), format="PNG")
    Image.fromarray(np.full((1, 1), 255, np.uint8)).save(f.setdefault("one_pixel", d / "one_pixel.png"))
    Image.fromarray(digit(280)).save(f.setdefault("large", d / "large.png"))
    return f


def mask_files(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    f = {}
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(f.setdefault("zeros", d / "zeros.png"))
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(f.setdefault("ones", d / "ones.png"))
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(f.setdefault("wrong_size", d / "wrong_size.png"))
    f["bomb"] = bomb_png(d / "bomb.png")
    f["text"] = d / "text.png"
    f["text"].write_text("not a mask\n")
    return f


# -- IDX data sets ----------------------------------------------------------------------------------------------
def data_variants(d: Path) -> dict[str, Path]:
    """name -> a data folder: the good tiny set, and copies of it with one file broken."""
    good = make_idx_dir(d / "good", n_train=16, n_test=8)
    images, labels = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress((good / images).read_bytes())

    def variant(name: str, file: str, data: bytes) -> None:
        shutil.copytree(good, d / name)
        (d / name / file).write_bytes(data)

    variant("wrong_magic", images, gzip.compress(b"\x12\x34\x08\x03" + raw[4:]))
    variant("truncated_gzip", images, (good / images).read_bytes()[:200])
    variant("truncated_idx", images, gzip.compress(raw[: len(raw) // 2]))
    variant("short_header", images, gzip.compress(raw[:6]))
    variant("zero_byte", images, b"")
    variant("not_gzip", images, b"this is not gzip data\n" * 10)
    variant("wrong_shape", images, b"")
    write_idx(d / "wrong_shape" / images, np.zeros((16, 27, 29), np.uint8))  # a consistent file of 27x29 images
    variant("label_count", labels, gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 5)))
    variant(
        "labels_out_of_range", labels, gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 16) + bytes([42] * 16))
    )
    variant("images_as_labels", labels, (good / images).read_bytes())
    shutil.copytree(good, d / "missing_file")
    (d / "missing_file" / images).unlink()
    return {p.name: p for p in d.iterdir()}


# -- checkpoints ----------------------------------------------------------------------------------------------
class Payload:
    """Unpickling this runs `touch marker`: a pickle posing as a checkpoint. Never loaded by the code under test."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def checkpoint_variants(d: Path, marker: Path) -> dict[str, Path]:
    """name -> --model value: a good tiny class model, and runs with one thing wrong."""
    good = make_checkpoint(d / "good")
    weights, config = (good / WEIGHTS_NAME).read_bytes(), json.loads((good / "model.json").read_text())
    runs: dict[str, Path] = {"good": good}

    def run(name: str, weight_bytes: bytes | None = None, cfg: dict | str | None = None) -> Path:
        r = d / name
        r.mkdir()
        (r / WEIGHTS_NAME).write_bytes(weights if weight_bytes is None else weight_bytes)
        text = json.dumps(config if cfg is None else cfg) if not isinstance(cfg, str) else cfg
        (r / "model.json").write_text(text)
        runs[name] = r
        return r

    rng = np.random.default_rng(0)
    run("corrupt", rng.integers(0, 256, len(weights), dtype=np.uint8).tobytes())
    run("truncated", weights[: len(weights) // 2])
    run("zero_byte", b"")
    run("header_lies", struct.pack("<Q", 10**9) + weights[8:])
    run("not_json", cfg="{ this is not json")
    run("no_format", cfg={k: v for k, v in config.items() if k != "format"})
    run("lies_about_shapes", cfg={**config, "unet": {**config["unet"], "hidden": 16}})
    run("lies_about_kind", cfg={**config, "kind": "time", "unet": {**config["unet"], "num_classes": 0}})
    run("bad_unet_values", cfg={**config, "unet": {**config["unet"], "hidden": -4}})
    run("pickle_as_safetensors", torch_pickle(marker))
    time_run = make_checkpoint(d / "time_kind", kind="time")  # a real model of another kind
    runs["time_kind"] = time_run
    runs["denoiser_kind"] = make_checkpoint(d / "denoiser_kind", kind="denoiser")
    pt = d / "model.pt"
    pt.write_bytes(torch_pickle(marker))
    pt.with_suffix(".json").write_text(json.dumps(config))
    runs["pt_file"] = pt
    (d / "empty_dir").mkdir()
    runs["empty_dir"] = d / "empty_dir"
    return runs


def torch_pickle(marker: Path) -> bytes:
    """torch.save of a dict whose unpickling would run a command (creating marker)."""
    path = marker.parent / f"{marker.name}.pt.tmp"
    torch.save({"state_dict": Payload(marker)}, path)
    data = path.read_bytes()
    path.unlink()
    return data
