"""Part A on an IF-I-XL-shaped UNet (random weights, the config of issue 5, about 4.3 B parameters) at 64 px:
time per denoising step of CFG / anagram / hybrid, our batched estimators (one UNet call per step) vs sequential
calls, N anagrams in one batch, eager and (with --compile) torch.compile'd; peak memory.

Weights are fp16 on CUDA, bf16 on a CPU that computes it natively (else fp32). On a CPU the full-size UNet takes
about 9 GB of RAM and seconds per call: use --repeats 1 --warmup 1 and a small --many. --width K scales the
channels to (64K, 128K, 192K, 256K); IF-I-XL is K = 11 (K = 1 is a smoke run).

  python benchmarks/bench_parta.py --device cuda [--compile] [--repeats 5]
  python benchmarks/bench_parta.py --device cpu --threads 2 --repeats 1 --warmup 1 --many 2
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

from diffusionlab.model_kinds import IF
from diffusionlab.model_protocol import DiffusionModel

XL_WIDTH = 11  # IF-I-XL's block_out_channels are (64, 128, 192, 256) x 11
XL = dict(
    sample_size=64,
    in_channels=3,
    out_channels=6,
    down_block_types=("ResnetDownsampleBlock2D", *["SimpleCrossAttnDownBlock2D"] * 3),
    up_block_types=(*["SimpleCrossAttnUpBlock2D"] * 3, "ResnetUpsampleBlock2D"),
    mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    block_out_channels=(704, 1408, 2112, 2816),
    layers_per_block=3,
    act_fn="gelu",
    attention_head_dim=64,
    cross_attention_dim=2816,
    cross_attention_norm="group_norm",
    encoder_hid_dim=4096,
    encoder_hid_dim_type="text_proj",
    addition_embed_type="text",
    addition_embed_type_num_heads=64,
    resnet_time_scale_shift="scale_shift",
)


def unet_config(width: int = XL_WIDTH) -> dict:
    """The IF-I-XL config with its channels scaled to (64, 128, 192, 256) x width."""
    channels = tuple(c * width for c in (64, 128, 192, 256))
    return {**XL, "block_out_channels": channels, "cross_attention_dim": channels[-1]}


def weight_dtype(device: torch.device) -> torch.dtype:
    from diffusionlab.precision import bf16_native

    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if bf16_native(device) else torch.float32


class RandomIF(DiffusionModel):
    """The model protocol over a random IF-I-XL-shaped UNet (as deepfloyd/adapters.py calls it)."""

    name = "random-IF-I-XL"
    kind = IF  # learned-range variance in [-1, 1], IF's defaults
    conditioned = True
    value_range = (-1.0, 1.0)
    image_shape = (3, 64, 64)

    def __init__(self, device: torch.device, compile: bool, width: int = XL_WIDTH) -> None:
        from diffusers import UNet2DConditionModel

        from diffusionlab.schedule import NoiseSchedule

        self.device = device
        self.dtype = weight_dtype(device)
        self.schedule = NoiseSchedule.cosine(1000)
        default = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)  # built in the weight dtype: no fp32 copy of 4.3 B parameters in RAM
        try:
            self.unet = UNet2DConditionModel(**unet_config(width)).to(device).eval()
        finally:
            torch.set_default_dtype(default)
        self.params = sum(p.numel() for p in self.unet.parameters())
        self.call = torch.compile(self.unet, dynamic=False) if compile else self.unet

    @torch.no_grad()
    def predict(self, x_t, t, cond):
        from diffusionlab.model_protocol import Prediction

        n = x_t.shape[0]
        t = torch.as_tensor(t, device=self.device).reshape(-1).long().expand(n)
        cond = cond.expand(n, *cond.shape[1:]) if cond.shape[0] == 1 else cond
        out = self.call(x_t.to(self.dtype), t, encoder_hidden_states=cond.to(self.dtype), return_dict=False)[0].float()
        return Prediction(out[:, :3], out[:, 3:])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):  # warm-up (and compilation)
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB"


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import header

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (compilation, allocator)")
    p.add_argument("--many", type=int, default=8, help="anagrams in one batch vs one at a time (0: skip the row)")
    p.add_argument("--width", type=int, default=XL_WIDTH, help=f"channel scale; IF-I-XL is {XL_WIDTH}")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(header(args.device, torch.get_num_threads()))
    from diffusionlab.guidance import anagram, cfg, hybrid
    from diffusionlab.views import get_view

    dev = torch.device(args.device)
    model = RandomIF(dev, args.compile, args.width)
    shape = "IF-I-XL-shaped" if args.width == XL_WIDTH else f"IF-I-XL-shaped (channels x{args.width}/{XL_WIDTH})"
    print(f"random {shape} UNet: {model.params / 1e9:.2f} B parameters, {model.dtype}, compile={args.compile}")
    g = torch.Generator(dev).manual_seed(0)
    emb = [torch.randn(1, 77, 4096, generator=g, device=dev) for _ in range(3)]
    x1 = torch.randn(1, 3, 64, 64, generator=g, device=dev)
    xs = torch.randn(max(args.many, 1), 3, 64, 64, generator=g, device=dev)
    t = 500
    rot = get_view("rot180", model.image_shape)
    ident = get_view("identity", model.image_shape)
    abar = float(model.schedule.abar(t))

    def seq(calls):
        return lambda: [model.predict(x, t, c) for x, c in calls]

    rows = []
    cfg_est = cfg(model, emb[0], emb[2], 7.0)
    rows.append(("CFG step", seq([(x1, emb[0]), (x1, emb[2])]), lambda: cfg_est(x1, t), 2))
    ana = anagram(model, [(ident, emb[0]), (rot, emb[1])], emb[2], 7.0)
    flipped = rot.apply_noisy(x1, abar, model.value_range)
    rows.append(
        ("anagram step", seq([(x1, emb[0]), (x1, emb[2]), (flipped, emb[1]), (flipped, emb[2])]), lambda: ana(x1, t), 4)
    )
    hyb = hybrid(model, emb[0], emb[1], emb[2], 7.0)
    rows.append(("hybrid step", seq([(x1, emb[0]), (x1, emb[1]), (x1, emb[2])]), lambda: hyb(x1, t), 3))
    time_it = dict(repeats=args.repeats, warmup=args.warmup, device=dev)
    for name, sequential, batched, calls in rows:
        a, b = timed(sequential, **time_it), timed(batched, **time_it)
        print(
            f"{name}: {calls} sequential calls {a * 1e3:.1f} ms, ours batched {b * 1e3:.1f} ms, ratio {a / b:.2f}x",
            flush=True,
        )
    if args.many:
        n = args.many
        a = timed(lambda: [ana(xs[i : i + 1], t) for i in range(n)], **time_it)
        b = timed(lambda: ana(xs, t), **time_it)
        print(
            f"{n} anagrams: one at a time {a * 1e3:.1f} ms/step, in one batch {b * 1e3:.1f} ms/step, ratio {a / b:.2f}x"
        )
    print(peak_memory(dev))


if __name__ == "__main__":
    main()
