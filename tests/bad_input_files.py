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

from diffusionlab.data import write_idx
from diffusionlab.model_files import WEIGHTS_NAME


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


# -- round 2 (issue 38): files that lie about what they are, special files, memory amplified under the caps ----
def strip_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit PNG of width x height, all black, made in one compress call (fast for a 1 x 39,000,000 strip:
    about 80 kB on disk, under the 40-megapixel cap, 28 x 1.1 billion pixels once the short side is scaled to 28)."""
    row = bytes(1 + (width + 7) // 8)
    path.write_bytes(_png(width, height, zlib.compress(row * height, 6)))
    return path


def sparse_idx(path: Path, images: int) -> Path:
    """A raw IDX file whose header declares `images` 28x28 images and whose size matches it: a sparse file (a few
    kB on disk) of `images` x 784 bytes (10 GB for 12,755,102 images)."""
    with open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x03" + struct.pack(">III", images, 28, 28))
        f.truncate(16 + images * 784)
    return path


def gzip_bomb_idx(path: Path, gigabytes: int, declared_images: int | None = None) -> Path:
    """A gzip IDX file expanding to `gigabytes` GB (about 1 MB of gzip a GB): the header in a gzip member of its
    own, then one member of 64 MB of zeros repeated (a gzip file may hold several members; readers join them).
    Its header declares what the stream holds, or `declared_images` images (a header that under-declares)."""
    chunk = 64 * 2**20
    images = declared_images if declared_images is not None else gigabytes * 2**30 // 784
    header = gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">III", images, 28, 28), 9)
    zeros = gzip.compress(bytes(chunk), 9)
    rest = gzip.compress(bytes(gigabytes * 2**30 % chunk), 9)  # 0 here: a GB is 16 chunks
    path.write_bytes(header + zeros * (gigabytes * 2**30 // chunk) + rest)
    return path


def idx_bombs(d: Path) -> dict[str, Path]:
    """name -> a data folder whose train images are a memory bomb under the old checks (good labels beside)."""
    good = make_idx_dir(d / "good_for_bombs", n_train=16, n_test=8)
    folders = {}
    for name in ("sparse_10gb", "gzip_8gb", "gzip_underdeclared", "sparse_just_over_budget"):
        shutil.copytree(good, d / name)
        (d / name / "train-images-idx3-ubyte.gz").unlink()
        folders[name] = d / name
    sparse_idx(folders["sparse_10gb"] / "train-images-idx3-ubyte", 12_755_102)
    gzip_bomb_idx(folders["gzip_8gb"] / "train-images-idx3-ubyte.gz", 8)
    gzip_bomb_idx(folders["gzip_underdeclared"] / "train-images-idx3-ubyte.gz", 1, declared_images=16)
    sparse_idx(folders["sparse_just_over_budget"] / "train-images-idx3-ubyte", 256 * 2**20 // 784 + 1)
    return folders


def special_files(d: Path, good_run: Path) -> dict[str, Path]:
    """name -> a path that is not a regular file where a file is read: named pipes (a reader would block forever),
    a device, symlinks to them, a folder, a dangling symlink and a symlink loop."""
    d.mkdir(parents=True, exist_ok=True)
    f = {"fifo": d / "pipe.png", "fifo_json_run": d / "fifo_json_run", "fifo_weights_run": d / "fifo_weights_run"}
    os.mkfifo(f["fifo"])
    for name, fifo_name in (("fifo_json_run", "model.json"), ("fifo_weights_run", WEIGHTS_NAME)):
        f[name].mkdir()
        for part in (WEIGHTS_NAME, "model.json"):
            if part == fifo_name:
                os.mkfifo(f[name] / part)
            else:
                shutil.copy(good_run / part, f[name] / part)
    f["classifier_fifo_json"] = d / "clf.safetensors"
    f["classifier_fifo_json"].write_bytes(b"")
    os.mkfifo(d / "clf.json")
    f["link_to_fifo"] = d / "link.png"
    f["link_to_fifo"].symlink_to(f["fifo"])
    f["dangling"] = d / "dangling.png"
    f["dangling"].symlink_to(d / "nothing-here.png")
    f["loop"] = d / "loop.png"
    f["loop"].symlink_to(f["loop"])
    f["dev_zero_png"] = d / "zero.png"
    f["dev_zero_png"].symlink_to("/dev/zero")
    f["fifo_idx"] = make_idx_dir(d / "fifo_idx", n_train=16, n_test=8)  # a data folder whose train images are a pipe
    (f["fifo_idx"] / "train-images-idx3-ubyte.gz").unlink()
    os.mkfifo(f["fifo_idx"] / "train-images-idx3-ubyte.gz")
    f["mask_fifo"] = d / "mask.png"
    os.mkfifo(f["mask_fifo"])
    return f
