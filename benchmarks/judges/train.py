"""Train the held-out judge (benchmarks only) and the shipped ranker ensemble's members (issue 37).

The judge scores illusions and never ranks or steers them: it is another architecture (5x5 convolutions without
BatchNorm, a wide dense layer, dropout 0.5: a LeNet) trained on its own seed with its own augmentation (shifts,
small rotations and scales), so that a candidate picked by the ensemble is not scored by a twin of it.
The ranker members are the project's `Classifier` at other widths, seeds and shift augmentation
(`evaluation.classifier.train_classifier`), saved float16 into src/diffusionlab/weights.

  OMP_NUM_THREADS=1 python benchmarks/judges/train.py judge --data-dir /work/shared/data/mnist
  OMP_NUM_THREADS=1 python benchmarks/judges/train.py ranker --data-dir /work/shared/data/mnist
  OMP_NUM_THREADS=1 python benchmarks/judges/train.py judge --data fashion-mnist --data-dir DIR/fashion-mnist
  python benchmarks/judges/train.py ranker-flip-symmetric --data-dir DIR --out FLIPSYM.safetensors  # a candidate
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE.parents[1] / "src" / "diffusionlab" / "weights"
sys.path.insert(0, str(HERE.parents[1] / "scripts"))
from ship_weights import strip_machine_paths  # noqa: E402  (committed JSON holds no machine's paths)

# (name, channels, feature_dim, max_shift, seed): widths, seeds and shifts all differ from the shipped
# mnist-classifier ((16, 32), 128, shift 2, seed 0), which is the ensemble's first member
RANKER_MEMBERS = [
    ("mnist-ranker-b", (12, 24), 96, 3, 11),
    ("mnist-ranker-c", (16, 32), 64, 1, 23),
]


class JudgeNet(nn.Module):
    """LeNet-style: conv5x5(32)-ReLU-pool, conv5x5(64)-ReLU-pool, dense 256, dropout 0.5, linear; no BatchNorm."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 4 * 4, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.conv(x - 0.13))


class DevJudgeNet(nn.Module):
    """An MLP: 784-512-256-10, ReLU, dropout 0.3; neither a convolution nor the held-out judge's LeNet."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, num_classes),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# what each judge is for: the held-out judge scores every reported rate; the development judge only chooses
# between ranker designs (benchmarks/ranker_study.py), so that the held-out one never picks what it grades;
# the file is DATA-NAME (mnist-judge-lenet, fashion-mnist-judge-lenet)
JUDGES = {
    "judge": (JudgeNet, "judge-lenet", 101, 2),
    "dev-judge": (DevJudgeNet, "devjudge-mlp", 202, 3),
}


class Judge:
    """The judge as a scorer: logits/classify of images (N, 1, 28, 28) in [0, 1], batched, no grad."""

    def __init__(self, net: JudgeNet, config: dict) -> None:
        self.net, self.config = net.eval(), config

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        return torch.cat([self.net(c.float()) for c in images.split(1000)]) if len(images) else torch.empty(0, 10)

    def classify(self, images: Tensor) -> Tensor:
        return self.logits(images).argmax(1)


def load_judge(path: str | Path = HERE / "mnist-judge-lenet.safetensors") -> Judge:
    path = Path(path)
    config = json.loads(path.with_suffix(".json").read_text())
    net = DevJudgeNet() if config.get("kind") == "development judge" else JudgeNet()  # train_judge writes the kind
    net.load_state_dict({k: v.float() for k, v in load_file(path).items()})
    return Judge(net, config)


def _augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random affine per image: rotation +-12 degrees, scale 0.9-1.1, shift +-2 px (zero fill)."""
    n = len(x)
    ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(12)
    sc = 0.9 + 0.2 * torch.rand(n, generator=gen)
    sh = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 / 14)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, sh[:, 0]], 1), torch.stack([sin, cos, sh[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def train_judge(
    data: str, data_dir: str, epochs: int, seed: int, out: Path, net_class: type[nn.Module] = JudgeNet
) -> None:
    from diffusionlab.data import load_split, to_float

    train, test = load_split(data, "train", data_dir), load_split(data, "test", data_dir)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = net_class()
    x, y = to_float(train.images), train.labels
    steps = epochs * math.ceil(len(x) / 128)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            loss = F.cross_entropy(net(_augment(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    net.load_state_dict({k: v.half().float() for k, v in net.state_dict().items()})  # scored as saved
    judge = Judge(net, {})
    acc = float((judge.classify(to_float(test.images)) == test.labels).float().mean())
    config = {
        "kind": "development judge" if net_class is DevJudgeNet else "judge",
        "architecture": net_class.__doc__,
        "data": data,
        "test_accuracy": round(acc, 5),
        "seed": seed,
        "epochs": epochs,
        "augmentation": _augment.__doc__,
        "train_seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
        "command": strip_machine_paths(shlex.join(["python", *sys.argv])),
    }
    save_file({k: v.half().contiguous() for k, v in net.state_dict().items()}, str(out))
    out.with_suffix(".json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"{out.name}: test accuracy {100 * acc:.2f} % ({config['train_seconds']:.0f} s)", flush=True)


def train_rankers(data_dir: str, epochs: int, only: str | None) -> None:
    from diffusionlab.evaluation.classifier import train_classifier

    for name, channels, feature_dim, shift, seed in RANKER_MEMBERS:
        if only and name != only:
            continue
        command = strip_machine_paths(shlex.join(["python", *sys.argv]))
        _, acc = train_classifier(
            "mnist", data_dir, epochs, seed=seed, channels=channels, feature_dim=feature_dim, max_shift=shift,
            out_path=WEIGHTS / f"{name}.safetensors", progress=False, command=command,
        )  # fmt: skip
        print(f"{name}: test accuracy {100 * acc:.2f} %", flush=True)


FLIP_SYMMETRIC = (0, 1, 3, 8)  # digits that read as themselves upside down


def train_flip_symmetric_member(data_dir: str, epochs: int, seed: int, out: Path) -> None:
    """A candidate ranker member for flip anagrams (issue 37): the shipped classifier's architecture trained also on
    upside-down copies of FLIP_SYMMETRIC, labelled as themselves. Written to --out, not shipped."""
    from diffusionlab.data import Split, load_split
    from diffusionlab.evaluation.classifier import train_classifier

    train = load_split("mnist", "train", data_dir)
    keep = torch.isin(train.labels, torch.tensor(FLIP_SYMMETRIC))
    split = Split(
        torch.cat([train.images, train.images[keep].flip(-2)]), torch.cat([train.labels, train.labels[keep]]), train.md5
    )
    command = strip_machine_paths(shlex.join(["python", *sys.argv]))
    _, acc = train_classifier(
        "mnist", data_dir, epochs, seed=seed, out_path=out, progress=False, command=command, train_split=split
    )
    print(f"{out.name}: {int(keep.sum())} upside-down images added; test accuracy {100 * acc:.2f} %", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=[*JUDGES, "ranker", "ranker-flip-symmetric"])
    p.add_argument("--data", default="mnist", choices=["mnist", "fashion-mnist"], help="the judge's data set")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--epochs", type=int, default=None, help="default: the judge's (JUDGES), 1 for ranker members")
    p.add_argument("--seed", type=int, default=None, help="the judge's seed (default: JUDGES)")
    p.add_argument("--only", default=None, help="one ranker member by name")
    p.add_argument("--out", type=Path, default=None, help="the judge's file (default: judges/DATA-NAME.safetensors)")
    args = p.parse_args()
    if args.what in JUDGES:
        net_class, name, seed, epochs = JUDGES[args.what]
        out = args.out or HERE / f"{args.data}-{name}.safetensors"
        train_judge(args.data, args.data_dir, args.epochs or epochs, args.seed or seed, out, net_class)
    elif args.what == "ranker-flip-symmetric":
        if args.out is None:
            p.error("ranker-flip-symmetric needs --out (a candidate member is not shipped)")
        train_flip_symmetric_member(args.data_dir, args.epochs or 1, args.seed or 37, args.out)
    elif args.data != "mnist":
        p.error("ranker members are trained for mnist only (evaluation.classifier.RANKER_MEMBERS)")
    else:
        train_rankers(args.data_dir, args.epochs or 1, args.only)


if __name__ == "__main__":
    main()
