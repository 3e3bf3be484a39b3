"""Multi-process training on PyTorch's own engine: torchrun with 2 ranks and gloo on the CPU equals one process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
from conftest import make_idx_dir

from diffusionlab.cli import main
from diffusionlab.distributed import DistContext, shard_rows
from diffusionlab.model_files import load_checkpoint

pytestmark = [
    pytest.mark.slow,  # two ranks started by torchrun per test
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available"),
]


def train_args(data, out, max_steps, precision="fp32"):
    return [
        "train",
        "class",
        "--data-dir",
        str(data),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--hidden",
        "8",
        "--num-steps",
        "50",
        "--max-steps",
        str(max_steps),
        "--no-figures",
        "--device",
        "cpu",
        "--log-every",
        "3",
        "--out",
        str(out),
        "--precision",
        precision,
    ]


def torchrun(args, nproc=2, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    result = subprocess.run(
        [*cmd, "-m", "diffusionlab", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def losses(run_dir):
    with (run_dir / "loss.csv").open() as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


def test_shards_are_disjoint_and_cover_the_batch():
    for n in (16, 7, 1):
        for world in (1, 2, 3):
            parts = [shard_rows(n, DistContext(r, world)) for r in range(world)]
            covered = [i for p in parts for i in range(n)[p]]
            assert covered == list(range(n))
            assert max(len(range(n)[p]) for p in parts) - min(len(range(n)[p]) for p in parts) <= 1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_two_ranks_train_what_one_process_trains_and_resume(tmp_path, capsys, precision):
    """2 ranks (gloo, CPU) x 8 rows each = one process x 16 rows, the 2-rank run stopped inside epoch 2 (step 3)
    and resumed to step 4; rank 0 alone writes the run. Each precision is forced, so that every CPU checks both
    (bf16 autocast runs on any x86 CPU). The contract (docs/precision.md):
    fp32: the same weights (1e-5) and losses (1e-5 relative);
    bf16: the same losses within 1e-3 relative, and weights within Adam's step bound: a rank's gradient is rounded
    to bf16 before the two are summed, one process rounds the sum, so a weight whose gradient is below bf16's
    rounding gets a different sign, and Adam makes full-size steps of either sign (|step| <= lr): the two runs can
    part by at most 2 x the sum of the learning rates."""
    data = make_idx_dir(tmp_path / "data", n_train=32)
    with pytest.raises(SystemExit) as e:
        main(train_args(data, tmp_path / "one", 4, precision))
    assert e.value.code in (0, None)
    capsys.readouterr()
    torchrun(train_args(data, tmp_path / "two", 3, precision))
    assert [s for s, _ in losses(tmp_path / "two")] == [1, 2, 3]
    torchrun([*train_args(data, tmp_path / "two", 4, precision), "--resume"])
    a, _ = load_checkpoint(tmp_path / "one")
    b, config = load_checkpoint(tmp_path / "two")
    assert [h["precision"] for h in config["provenance"]["history"]] == [precision, precision]
    assert set(a) == set(b)
    la, lb = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [s for s, _ in la] == [s for s, _ in lb] == list(range(1, 5))
    assert config["provenance"]["step"] == 4
    diffs = {k: float((a[k].float() - b[k].float()).abs().max()) for k in a}
    if precision == "bf16":
        lrs = [float(r["lr"]) for r in _rows(tmp_path / "one")]
        bound = 2 * sum(lrs) * 1.01  # Adam's bias-corrected step is at most lr (x 1.003 over 4 steps)
        assert max(diffs.values()) <= bound, (max(diffs.values()), bound)
        assert all(abs(x - y) <= 1e-3 * max(1.0, abs(x)) for (_, x), (_, y) in zip(la, lb, strict=True))
        return
    assert_fp32_equal(a, b, diffs, config)
    assert all(abs(x - y) <= 1e-5 * max(1.0, abs(x)) for (_, x), (_, y) in zip(la, lb, strict=True))


def _rows(run_dir):
    with (run_dir / "loss.csv").open() as f:
        return list(csv.DictReader(f))


def assert_fp32_equal(a, b, diffs, config):
    """Every weight and buffer within 1e-5, but those that no loss can see, compared through the output."""
    # A conv bias right before a BatchNorm has a gradient of exactly zero in exact arithmetic (the norm removes the
    # mean), so Adam turns the rounding noise of that gradient (summed in another order over 2 ranks) into full-size
    # steps; such a bias has no effect on the training-mode output, and it shifts the running means by the same
    # amount. Those are compared through the network's output (training mode, batch statistics) instead.
    before_bn = {k for k in a if k.endswith(".0.bias") and k.replace(".0.bias", ".1.running_mean") in a}
    running_means = {k.replace(".0.bias", ".1.running_mean") for k in before_bn}
    bad = {k: d for k, d in diffs.items() if k not in before_bn | running_means and d > 1e-5}
    assert not bad, bad
    assert len(diffs) - len(before_bn | running_means) > 40  # every other weight and buffer is compared
    from diffusionlab.networks.unet import UNet, UNetConfig

    nets = []
    for state in (a, b):
        net = UNet(UNetConfig.from_dict(config["unet"]))
        net.load_state_dict(state)
        nets.append(net.train())
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(16, 1, 28, 28, generator=g), torch.rand(16, generator=g)
    c = torch.nn.functional.one_hot(torch.arange(16) % 10, 10).float()
    with torch.no_grad():
        assert torch.allclose(nets[0](x, t, c), nets[1](x, t, c), atol=1e-5, rtol=0)


def test_sampling_splits_the_images_across_ranks(tmp_path):
    """Under torchrun rank r samples its contiguous share of the (prompt, image) list with the seed
    seed + 1_000_003 r (distributed.sharded_generate) and rank 0's grid shows the shares in order: the grid of
    the two shares sampled here, one after the other, pixel for pixel (within one grey level)."""
    import numpy as np
    from conftest import make_checkpoint
    from PIL import Image

    from diffusionlab.backends import load_model
    from diffusionlab.figures.grid import grid_image
    from diffusionlab.sampling import generate, timesteps_for

    run = make_checkpoint(tmp_path / "run", num_steps=20)
    out = tmp_path / "s.png"
    args = ["-p", "3", "-p", "7", "-n", "3", "--steps", "4", "--seed", "5", "--cfg", "3", "--plain", "--out", str(out)]
    torchrun(["sample", "--model", str(run), *args])
    m = load_model(str(run), "cpu", fast=False)
    per_image, threads = ["3"] * 3 + ["7"] * 3, torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank (OMP_NUM_THREADS=1)
    try:
        shares = [
            generate(m, per_image[shard_rows(6, DistContext(r, 2))], 1, 3.0, 5 + 1_000_003 * r, timesteps_for(m, 4))
            for r in range(2)
        ]
    finally:
        torch.set_num_threads(threads)
    want = grid_image(torch.cat(shares), 3, m.value_range, ["3", "7"], title=f"{m.name}  seed=5  cfg=3.0")
    got = np.asarray(Image.open(out).convert(want.mode), np.int16)
    assert got.shape == np.asarray(want).shape and np.abs(got - np.asarray(want, np.int16)).max() <= 1


@pytest.mark.parametrize(
    ("code", "status", "said"), [(None, 0, ""), (0, 0, ""), (2, 2, ""), ("error: x", 1, "error: x")]
)
def test_a_rank_ends_without_the_interpreters_teardown(monkeypatch, capsys, code, status, said):
    """A torchrun rank ends in os._exit after flushing (the two-rank runs above abort now and then in Python's
    teardown otherwise); its exit status is the command's. A process that joined no group is left alone."""
    from diffusionlab import distributed

    ended = []
    monkeypatch.setattr(distributed.os, "_exit", ended.append)
    monkeypatch.setitem(distributed._joined, "group", False)
    distributed.end_rank_process(code)
    assert ended == []
    monkeypatch.setitem(distributed._joined, "group", True)
    print("written before the end")
    distributed.end_rank_process(code)
    assert ended == [status]
    out = capsys.readouterr()
    assert out.out == "written before the end\n" and out.err.strip() == said
