"""Part A at 28 px (issue 14): which settings make each figure show what its section teaches, measured on the 100
test digits shipped in the package with the shipped classifier.

  python benchmarks/parta_settings.py --model mnist --i-starts 5,10,15,20,25

(a) Iterative denoising (A1.4) from the strided timestep i_start, against the one-step estimate and the blur from
    the same noisy digit: the share that the classifier still reads as the digit's label. The section teaches that
    iterative denoising recovers what one step cannot, so the figure wants an i_start where the two differ.
(b) Inpainting (A1.7.2): the share of each digit's ink (pixels > 0.5) under a mask; the course's mask scaled to
    28 px covers background, so the figure shows nothing inpainted.
"""

from __future__ import annotations

import argparse

import torch
from _common import header

from diffusionlab import edits
from diffusionlab.backends import load_model
from diffusionlab.data import to_float
from diffusionlab.evaluation import load_classifier
from diffusionlab.images import COURSE_MASK, default_mask, load_mask, rect_mask
from diffusionlab.progress import set_progress
from diffusionlab.testdigits import first_test_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--i-starts", default="5,10,15,20,25")
    parser.add_argument("--masks", default="rect:4:14:4:24,rect:14:24:4:24,rect:8:20:8:20")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-n", type=int, default=100, help="test digits (the shipped sample holds 100)")
    args = parser.parse_args()
    set_progress(False)
    print(header("cpu", torch.get_num_threads()))
    m = load_model(args.model)
    clf = load_classifier(m.config["data"])
    digits, labels, source = first_test_images(m.config["data"], args.n)
    x = to_float(digits, m.value_range)
    print(f"{len(x)} test digits: {source}\n")
    ts = edits.default_timesteps(m)
    print("| i_start | t | iterative | one-step | blur | noisy |\n|---|---|---|---|---|---|")
    for i in [int(v) for v in args.i_starts.split(",")]:
        g = torch.Generator().manual_seed(args.seed)
        x_t = edits.forward(m, x, [ts[i]], g)[0]
        rows = {
            "iterative": edits.iterative_denoise(m, x_t, i, None, 1.0, ts, g),
            "one-step": edits.one_step_denoise(m, x_t, ts[i]),
            "blur": edits.blur(x_t),
            "noisy": x_t,
        }
        acc = {k: float((clf.classify(v.clamp(0, 1)) == labels).float().mean()) for k, v in rows.items()}
        print(f"| {i} | {ts[i]} | " + " | ".join(f"{100 * acc[k]:.0f} %" for k in rows) + " |")
    ink = x > 0.5
    print("\n| mask | share of the digits' ink under it |\n|---|---|")
    h = m.image_shape[1]
    r0, r1, c0, c1 = (round(v * h / 64) for v in COURSE_MASK)
    masks = {"course (scaled)": rect_mask(m.image_shape, r0, r1, c0, c1), "default": default_mask(m.image_shape)}
    masks |= {s: load_mask(s, m.image_shape) for s in args.masks.split(",")}
    for name, mk in masks.items():
        share = float((ink & (mk > 0.5)).sum() / ink.sum())
        print(f"| {name} | {100 * share:.0f} % |")


if __name__ == "__main__":
    main()
