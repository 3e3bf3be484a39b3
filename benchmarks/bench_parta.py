"""Part A on an IF-I-XL-shaped UNet (random fp16 weights, the config of issue 5, about 4.3 B parameters) at 64 px:
time per denoising step of CFG / anagram / hybrid, our batched estimators (one UNet call per step) vs sequential
calls, 8 anagrams in one batch, eager and (with --compile) torch.compile'd; peak GPU memory. GPU only.

  python benchmarks/bench_parta.py --device cuda [--compile] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

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


class RandomIF:
    """The model protocol over a random IF-I-XL-shaped UNet (as models/deepfloyd.py calls it)."""

    value_range = (-1.0, 1.0)
    image_shape = (3, 64, 64)

    def __init__(self, device: torch.device, compile: bool) -> None:
        from diffusers import UNet2DConditionModel

        from diffusionlab.schedule import NoiseSchedule

        self.device = device
        self.schedule = NoiseSchedule.cosine(1000)
        self.unet = UNet2DConditionModel(**XL).to(device, torch.float16).eval()
        self.params = sum(p.numel() for p in self.unet.parameters())
        self.call = torch.compile(self.unet, dynamic=False) if compile else self.unet

    @torch.no_grad()
    def predict(self, x_t, t, cond):
        from diffusionlab.model import Prediction

        n = x_t.shape[0]
        t = torch.as_tensor(t, device=self.device).reshape(-1).long().expand(n)
        cond = cond.expand(n, *cond.shape[1:]) if cond.shape[0] == 1 else cond
        out = self.call(x_t.half(), t, encoder_hidden_states=cond.half(), return_dict=False)[0].float()
        return Prediction(out[:, :3], out[:, 3:])


def timed(fn, repeats: int) -> float:
    fn()
    fn()  # warm-up (and compilation)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import header

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(header(args.device, torch.get_num_threads()))
    if not args.device.startswith("cuda") or not torch.cuda.is_available():
        print("skipped: the IF-I-XL-shaped benchmark needs a CUDA GPU (about 9 GB of fp16 weights); not measured")
        return
    from diffusionlab.guidance import anagram, cfg, hybrid
    from diffusionlab.views import get_view

    dev = torch.device(args.device)
    model = RandomIF(dev, args.compile)
    print(f"random IF-I-XL-shaped UNet: {model.params / 1e9:.2f} B parameters, fp16, compile={args.compile}")
    g = torch.Generator(dev).manual_seed(0)
    emb = [torch.randn(1, 77, 4096, generator=g, device=dev) for _ in range(3)]
    x1 = torch.randn(1, 3, 64, 64, generator=g, device=dev)
    x8 = torch.randn(8, 3, 64, 64, generator=g, device=dev)
    t = 500
    rot = get_view("rot180", model.image_shape, model.value_range)
    ident = get_view("identity", model.image_shape, model.value_range)
    abar = float(model.schedule.abar(t))

    def seq(calls):
        return lambda: [model.predict(x, t, c) for x, c in calls]

    rows = []
    torch.cuda.reset_peak_memory_stats()
    cfg_est = cfg(model, emb[0], emb[2], 7.0)
    rows.append(("CFG step", seq([(x1, emb[0]), (x1, emb[2])]), lambda: cfg_est(x1, t), 2))
    ana = anagram(model, [(ident, emb[0]), (rot, emb[1])], emb[2], 7.0)
    flipped = rot.apply_noisy(x1, abar)
    rows.append(
        ("anagram step", seq([(x1, emb[0]), (x1, emb[2]), (flipped, emb[1]), (flipped, emb[2])]), lambda: ana(x1, t), 4)
    )
    hyb = hybrid(model, emb[0], emb[1], emb[2], 7.0)
    rows.append(("hybrid step", seq([(x1, emb[0]), (x1, emb[1]), (x1, emb[2])]), lambda: hyb(x1, t), 3))
    for name, sequential, batched, calls in rows:
        a, b = timed(sequential, args.repeats), timed(batched, args.repeats)
        print(f"{name}: {calls} sequential calls {a * 1e3:.1f} ms, ours batched {b * 1e3:.1f} ms, ratio {a / b:.2f}x")
    a = timed(lambda: [ana(x8[i : i + 1], t) for i in range(8)], args.repeats)
    b = timed(lambda: ana(x8, t), args.repeats)
    print(f"8 anagrams: one at a time {a * 1e3:.1f} ms/step, in one batch {b * 1e3:.1f} ms/step, ratio {a / b:.2f}x")
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
