"""Scores for generated images: a small CNN classifier per data set, and what is measured with it.

- `Classifier`: a plain CNN (two conv stages with BatchNorm, a 128-d penultimate feature layer, dropout, a linear
  head) trained by `train_classifier` on the train split of MNIST / Fashion-MNIST. Input: images in [0, 1],
  (N, 1, 28, 28).
- `conditional_accuracy`: the fraction of class-conditional samples classified as the class asked for.
- `frechet_distance`: the Frechet distance between Gaussians fitted to the classifier's penultimate features
  (FID's formula, with our classifier in place of Inception).
- `anagram_success`: the image is classified as prompt 1 AND its view as prompt 2.
- `hybrid_scores`: the far view (the image downscaled by `factor` with average pooling, then upsampled back) is
  classified as the low-pass prompt; the near view (the image itself, as seen up close) as the high-pass prompt.
- `evaluate_model`: class-conditional samples of one of our models -> conditional accuracy, Frechet distance to
  the test set, and the reference Frechet distance of a same-size subset of the train set to the test set.

All scoring functions take images in [0, 1]; `to_unit` maps a model's value range there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from diffusionlab.checkpoint import load_checkpoint, save_checkpoint
from diffusionlab.data import Split, dataset_info, load_split, to_float
from diffusionlab.errors import DiffusionLabError

CLASSIFIER_FORMAT = "diffusionlab-classifier"


# -- the classifier -------------------------------------------------------------------------------------------
class Classifier(nn.Module):
    """conv-BN-ReLU x2, maxpool, conv-BN-ReLU x2, maxpool, linear -> `feature_dim` features (BN, ReLU), dropout,
    linear head. `channels` = (c1, c2) are the widths of the two stages."""

    def __init__(
        self, channels: Sequence[int] = (16, 32), feature_dim: int = 128, num_classes: int = 10, dropout: float = 0.3
    ) -> None:
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        self.hparams = {
            "channels": [c1, c2],
            "feature_dim": feature_dim,
            "num_classes": num_classes,
            "dropout": dropout,
        }

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.conv = nn.Sequential(
            *block(1, c1), *block(c1, c1), nn.MaxPool2d(2), *block(c1, c2), *block(c2, c2), nn.MaxPool2d(2)
        )
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 7 * 7, feature_dim, bias=False), nn.BatchNorm1d(feature_dim), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (N, feature_dim) of images in [0, 1]."""
        return self.embed(self.conv((x - 0.5) / 0.5))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class Scorer(Protocol):
    """What the scores need: labels and features of images in [0, 1]. `TrainedClassifier` is one."""

    def classify(self, images: Tensor) -> Tensor: ...

    def features(self, images: Tensor) -> Tensor: ...


@dataclass
class TrainedClassifier:
    """A classifier with its config (data set, class names, test accuracy, provenance); batched, no-grad calls."""

    net: Classifier
    config: dict = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 500

    def __post_init__(self) -> None:
        self.net = self.net.to(self.device).eval()

    @property
    def data(self) -> str | None:
        return self.config.get("data")

    @property
    def num_classes(self) -> int:
        return int(self.net.hparams["num_classes"])

    @property
    def test_accuracy(self) -> float | None:
        return self.config.get("test_accuracy")

    @torch.no_grad()
    def _batched(self, fn, images: Tensor) -> Tensor:
        check_images(images)
        outs = [fn(chunk.to(self.device, torch.float32)).cpu() for chunk in images.split(self.batch_size)]
        return torch.cat(outs) if outs else torch.empty(0)

    def logits(self, images: Tensor) -> Tensor:
        return self._batched(self.net, images)

    def classify(self, images: Tensor) -> Tensor:
        """Predicted class (N,) int64 of images (N, 1, 28, 28) in [0, 1]."""
        return self.logits(images).argmax(1)

    def features(self, images: Tensor) -> Tensor:
        """Penultimate features (N, feature_dim), float32 on the CPU."""
        return self._batched(self.net.features, images)


def check_images(images: Tensor) -> None:
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise DiffusionLabError(
            f"the classifier takes images (N, 1, 28, 28) in [0, 1], got shape {tuple(images.shape)}"
        )


def classify(classifier: Scorer, images: Tensor) -> Tensor:
    """Predicted labels (N,) of images in [0, 1]."""
    return classifier.classify(images)


def to_unit(images: Tensor, value_range: Sequence[float] = (0.0, 1.0)) -> Tensor:
    """Images in a model's value range -> [0, 1], clamped (samples can overshoot the range)."""
    lo, hi = float(value_range[0]), float(value_range[1])
    return ((images.float() - lo) / (hi - lo)).clamp(0.0, 1.0)


# -- training, saving, loading ----------------------------------------------------------------------------------
def _shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Random integer translations of up to max_shift pixels per image (zero fill): pad, then crop per image."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(x.device)  # (n, h)
    cols = (dx[:, None] + torch.arange(w)[None, :]).to(x.device)  # (n, w)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    return padded[idx_n, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


@torch.no_grad()
def accuracy(classifier: Scorer, images: Tensor, labels: Tensor) -> float:
    """Fraction of images in [0, 1] classified as their labels."""
    if len(labels) == 0:
        raise DiffusionLabError("no images to score")
    return float((classifier.classify(images) == labels.cpu()).float().mean())


def train_classifier(
    data: str = "mnist",
    data_dir: str | Path | None = None,
    epochs: int = 4,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    channels: Sequence[int] = (16, 32),
    feature_dim: int = 128,
    max_shift: int = 2,
    out_path: str | Path | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = torch.float16,
    progress: bool = True,
    command: str | None = None,
    train_split: Split | None = None,
    test_split: Split | None = None,
) -> tuple[TrainedClassifier, float]:
    """Train the classifier on the train split (AdamW, one-cycle LR, random shifts of up to max_shift pixels).

    The test accuracy is measured with the weights as saved (cast to `dtype`, e.g. float16, and back). With
    out_path, writes out_path (.safetensors) and its JSON (config, test accuracy, provenance).
    Returns (classifier, test accuracy).
    """
    info = dataset_info(data)
    if epochs < 1:
        raise DiffusionLabError(f"--epochs must be at least 1, got {epochs}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    train = train_split or load_split(data, "train", data_dir)
    test = test_split or load_split(data, "test", data_dir)
    torch.manual_seed(seed)
    gen = torch.Generator("cpu").manual_seed(seed)
    net = Classifier(channels, feature_dim, len(info.class_names)).to(dev)
    x_all = to_float(train.images).to(dev)
    y_all = train.labels.to(dev)
    n = len(train)
    steps_per_epoch = math.ceil(n / batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.2)
    start = time.perf_counter()
    bar = tqdm(total=epochs * steps_per_epoch, desc=f"train {data} classifier", disable=not progress, unit="step")
    last_loss = float("nan")
    for _epoch in range(epochs):
        net.train()
        perm = torch.randperm(n, generator=gen).to(dev)
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            x = _shift(x_all[idx], max_shift, gen)
            loss = F.cross_entropy(net(x), y_all[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            last_loss = float(loss.detach())
            bar.update(1)
            if i % 50 == 0:
                bar.set_postfix(loss=f"{last_loss:.3f}")
    bar.close()
    train_seconds = time.perf_counter() - start
    net = net.cpu().eval()
    if dtype is not None:  # score the weights as they will be saved
        net.load_state_dict(
            {k: (v.to(dtype).float() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
        )
    config = {
        "kind": "classifier",
        "name": f"{data}-classifier",
        "data": data,
        "class_names": list(info.class_names),
        "image_shape": [1, 28, 28],
        "value_range": [0.0, 1.0],
        "classifier": net.hparams,
    }
    clf = TrainedClassifier(net, config)
    acc = accuracy(clf, to_float(test.images), test.labels)
    config["test_accuracy"] = round(acc, 5)
    config["provenance"] = {
        "command": command or "python -c 'diffusionlab.evaluation.train_classifier(...)'",
        "seed": seed,
        "data": data,
        "data_md5": {**train.md5, **test.md5},
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "max_shift": max_shift,
        "final_loss": round(last_loss, 5),
        "test_accuracy": round(acc, 5),
        "train_seconds": round(train_seconds, 1),
        "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "weights_dtype": str(dtype or torch.float32).removeprefix("torch."),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if out_path is not None:
        save_classifier(clf, out_path, dtype)
    return clf, acc


def save_classifier(classifier: TrainedClassifier, path: str | Path, dtype: torch.dtype | None = torch.float16) -> Path:
    """Weights (safetensors) and config JSON beside them, each written atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    config = {**classifier.config, "format_kind": CLASSIFIER_FORMAT}
    save_checkpoint(path, classifier.net.state_dict(), config, dtype=dtype)
    return path


def classifier_path(name_or_path: str | Path) -> Path:
    """A data set name (mnist, fashion-mnist) -> the shipped classifier; anything else is a file path."""
    from diffusionlab.model import shipped_weights_dir

    s = str(name_or_path)
    if s in ("mnist", "fashion-mnist"):
        p = shipped_weights_dir() / f"{s}-classifier.safetensors"
        if not p.is_file():
            raise DiffusionLabError(
                f"no shipped {s} classifier in this install ({p}); train one with "
                f"`diffusionlab train-classifier --data {s} --out {s}-classifier.safetensors` and pass --classifier"
            )
        return p
    p = Path(s)
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    if not p.is_file():
        raise DiffusionLabError(
            f"classifier {s!r}: no such file; give a .safetensors file made by `diffusionlab train-classifier`, "
            "or a shipped name (mnist, fashion-mnist)"
        )
    return p


def load_classifier(name_or_path: str | Path, device: torch.device | str | None = None) -> TrainedClassifier:
    """A shipped classifier by data set name (mnist, fashion-mnist) or a .safetensors file of ours."""
    path = classifier_path(name_or_path)
    state, config = load_checkpoint(path)
    if config.get("kind") != "classifier" or "classifier" not in config:
        raise DiffusionLabError(
            f"{path}: not a classifier checkpoint (kind {config.get('kind')!r}); "
            "make one with `diffusionlab train-classifier`"
        )
    hp = config["classifier"]
    net = Classifier(hp["channels"], hp["feature_dim"], hp["num_classes"], hp.get("dropout", 0.3))
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise DiffusionLabError(f"{path}: weights do not fit the config's classifier ({first})") from None
    return TrainedClassifier(net, config, torch.device(device) if device is not None else torch.device("cpu"))


# -- scores ---------------------------------------------------------------------------------------------------
def _labels(labels: int | Sequence[int] | Tensor, n: int) -> Tensor:
    t = torch.as_tensor(labels, dtype=torch.long).reshape(-1).cpu()
    if t.numel() == 1:
        return t.expand(n)
    if t.numel() != n:
        raise DiffusionLabError(f"{t.numel()} labels for {n} images")
    return t


def conditional_accuracy(classifier: Scorer, images: Tensor, labels: int | Sequence[int] | Tensor) -> float:
    """Fraction of images (in [0, 1]) classified as the class they were generated for."""
    return accuracy(classifier, images, _labels(labels, images.shape[0]))


def per_class_accuracy(
    classifier: Scorer, images: Tensor, labels: Tensor, num_classes: int | None = None
) -> list[float | None]:
    """Conditional accuracy of each class (None for a class with no images)."""
    labels = _labels(labels, images.shape[0])
    pred = classifier.classify(images)
    k = num_classes or int(labels.max()) + 1
    return [float((pred[labels == c] == c).float().mean()) if (labels == c).any() else None for c in range(k)]


def gaussian_stats(feats: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) covariance of features (N, D), in float64."""
    f = torch.as_tensor(feats).detach().cpu().double()
    if f.ndim != 2 or f.shape[0] < 2:
        raise DiffusionLabError(f"the Frechet distance needs at least 2 feature vectors (N, D), got {tuple(f.shape)}")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(m: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues set to 0)."""
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_from_stats(mu_a: Tensor, cov_a: Tensor, mu_b: Tensor, cov_b: Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(Sa + Sb - 2 (Sa Sb)^1/2), with Tr (Sa Sb)^1/2 = Tr (Sa^1/2 Sb Sa^1/2)^1/2.

    The symmetric form keeps every eigen decomposition on a symmetric PSD matrix (stable, real, float64).
    """
    mu_a, cov_a, mu_b, cov_b = (torch.as_tensor(t).double() for t in (mu_a, cov_a, mu_b, cov_b))
    s = _sqrt_psd(cov_a)
    inner = s @ cov_b @ s
    tr_covmean = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    fd = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * tr_covmean
    return max(float(fd), 0.0)


def frechet_distance(feats_a: Tensor, feats_b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two sets of features (N_a, D) and (N_b, D)."""
    fa, fb = torch.as_tensor(feats_a), torch.as_tensor(feats_b)
    if fa.ndim != 2 or fb.ndim != 2 or fa.shape[1] != fb.shape[1]:
        raise DiffusionLabError(
            f"feature sets must be (N, D) with the same D, got {tuple(fa.shape)}, {tuple(fb.shape)}"
        )
    return frechet_from_stats(*gaussian_stats(fa), *gaussian_stats(fb))


def anagram_success(
    classifier: Scorer,
    images: Tensor,
    view: Any,
    label1: int | Sequence[int] | Tensor,
    label2: int | Sequence[int] | Tensor,
) -> dict[str, float]:
    """Anagram scores of images in [0, 1]: "first" = classified as label1, "second" = view.apply(image) classified
    as label2, "success" = both (per image, then averaged). `view` is a diffusionlab.views View (or any object with
    `apply(x)`) acting on [0, 1] images."""
    n = images.shape[0]
    l1, l2 = _labels(label1, n), _labels(label2, n)
    ok1 = classifier.classify(images) == l1
    ok2 = classifier.classify(view.apply(images).clamp(0, 1)) == l2
    return {
        "first": float(ok1.float().mean()),
        "second": float(ok2.float().mean()),
        "success": float((ok1 & ok2).float().mean()),
    }


def far_view(images: Tensor, factor: int = 4) -> Tensor:
    """What the image looks like from afar: average-pooled by `factor` (28 -> 7 for 4), upsampled back bilinearly."""
    h, w = images.shape[-2:]
    small = F.avg_pool2d(images, factor, ceil_mode=True)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def hybrid_scores(
    classifier: Scorer,
    images: Tensor,
    low_label: int | Sequence[int] | Tensor,
    high_label: int | Sequence[int] | Tensor,
    factor: int = 4,
) -> dict[str, float]:
    """Hybrid-image scores of images in [0, 1]: "far" = the far view (`far_view`, downscaled by `factor`)
    classified as the low-pass prompt; "near" = the image itself (what is seen up close, where the high
    frequencies dominate) classified as the high-pass prompt; "success" = both."""
    n = images.shape[0]
    lo, hi = _labels(low_label, n), _labels(high_label, n)
    ok_far = classifier.classify(far_view(images, factor)) == lo
    ok_near = classifier.classify(images) == hi
    return {
        "far": float(ok_far.float().mean()),
        "near": float(ok_near.float().mean()),
        "success": float((ok_far & ok_near).float().mean()),
    }


# -- evaluating a generative model ----------------------------------------------------------------------------
def evenly_spaced_timesteps(num_steps: int, steps: int) -> list[int]:
    """`steps` timesteps from T - 1 down to 0, evenly spaced; more steps than T means every step."""
    from diffusionlab.schedule import spaced_timesteps

    if steps < 1:
        raise DiffusionLabError(f"--steps must be at least 1, got {steps}")
    return spaced_timesteps(num_steps, min(steps, num_steps))


def background_std(raw: Tensor, value_range: Sequence[float] = (0.0, 1.0)) -> float:
    """Mean over images of the pixel std of the darkest half of each raw (unclamped) sample, on a [0, 1] scale.

    Real MNIST backgrounds are exactly 0, so this measures the grain a sampler leaves where there is no ink."""
    lo, hi = float(value_range[0]), float(value_range[1])
    flat = ((raw.float() - lo) / (hi - lo)).reshape(raw.shape[0], -1)
    darkest = flat.sort(dim=1).values[:, : flat.shape[1] // 2]
    return float(darkest.std(dim=1).mean())


@torch.no_grad()
def generate_class_samples(
    model: Any,
    labels: Tensor,
    cfg_scale: float = 5.0,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int = 250,
    progress: bool = True,
    sampler: dict[str, Any] | None = None,
    raw: list[Tensor] | None = None,
) -> Tensor:
    """Class-conditional samples of a class DDPM or flow model of ours, one per label, in [0, 1] on the CPU.

    DDPM: CFG over every step T-1..0 (Algorithm B.2), or `steps` evenly spaced timesteps, with the step rule of
    `sampler` ({"sampler", "variance", "eta"}; default: the model's own, sampling.sampler_defaults). Flow: Euler
    with `steps` steps (default: the config's `sample_steps`, else the course's N = 300), CFG on the velocity.
    `raw` (a list) receives the unclamped samples, chunk by chunk.
    """
    from diffusionlab import guidance, sampling
    from diffusionlab.schedule import full_timesteps

    model.require("class", what="evaluate")
    gen = torch.Generator("cpu").manual_seed(int(seed))
    names = model.class_names or [str(i) for i in range(model.num_classes)]
    out = []
    chunks = labels.split(batch_size)
    bar = tqdm(total=len(labels), desc="sampling", disable=not progress, unit="image")
    for chunk in chunks:
        cond = model.encode([names[int(c)] for c in chunk])
        uncond = model.null(1)
        if model.objective == "flow":
            n_steps = steps or int(model.config.get("sample_steps", 300))
            x = sampling.flow_sample(model, len(chunk), n_steps, cond, uncond, cfg_scale, generator=gen, progress=False)
        else:
            T = model.schedule.num_steps
            ts = full_timesteps(T) if steps is None else evenly_spaced_timesteps(T, steps)
            est = guidance.cfg(model, cond, uncond, cfg_scale)
            rule = sampling.sampler_defaults(model, sampler)
            x = sampling.sample(model, len(chunk), est, ts, generator=gen, progress=False, **rule)
        if raw is not None:
            raw.append(x.cpu())
        out.append(to_unit(x.cpu(), model.value_range))
        bar.update(len(chunk))
    bar.close()
    return torch.cat(out)


def evaluate_model(
    model: Any,
    classifier: Scorer,
    n_per_class: int = 100,
    cfg_scale: float = 5.0,
    steps: int | None = None,
    seed: int = 0,
    test_split: Split | None = None,
    train_split: Split | None = None,
    batch_size: int = 250,
    progress: bool = True,
    sampler: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Scores of a class-conditional model: conditional accuracy (overall and per class) of n_per_class samples
    per class at CFG scale cfg_scale, the background std of the raw samples, and, when the splits are given, their
    Frechet distance to the test set next to the reference: the Frechet distance of a random same-size subset of
    the train set to the test set (same N, so the same small-sample bias). Without splits no FD is computed."""
    from diffusionlab.sampling import sampler_defaults

    model.require("class", what="evaluate")
    if n_per_class < 1:
        raise DiffusionLabError(f"-n must be at least 1 per class, got {n_per_class}")
    k = model.num_classes
    if getattr(classifier, "num_classes", k) != k:
        raise DiffusionLabError(f"the classifier has {classifier.num_classes} classes but the model has {k}")
    data = model.config.get("data", "mnist")
    labels = torch.arange(k).repeat_interleave(n_per_class)
    start = time.perf_counter()
    raw: list[Tensor] = []
    images = generate_class_samples(model, labels, cfg_scale, steps, seed, batch_size, progress, sampler, raw)
    sample_seconds = time.perf_counter() - start
    n = labels.numel()
    step_rule = sampler_defaults(model, sampler)
    scores = {
        "model": getattr(model, "name", "model"),
        "data": data,
        "n_per_class": n_per_class,
        "n_samples": n,
        "cfg_scale": cfg_scale,
        "steps": steps,
        "sampler": "flow-euler" if model.objective == "flow" else sampler_name(step_rule),
        "seed": seed,
        "conditional_accuracy": conditional_accuracy(classifier, images, labels),
        "per_class_accuracy": per_class_accuracy(classifier, images, labels, k),
        "background_std": background_std(torch.cat(raw), model.value_range),
        "frechet_distance": None,
        "frechet_distance_train_vs_test": None,
        "classifier_test_accuracy": getattr(classifier, "test_accuracy", None),
        "sample_seconds": round(sample_seconds, 2),
    }
    if test_split is None or train_split is None:
        return scores
    if n < 2:
        raise DiffusionLabError("the Frechet distance needs at least 2 samples; raise -n")
    test_feats = classifier.features(to_float(test_split.images))
    gen = torch.Generator("cpu").manual_seed(int(seed) + 1)
    subset = torch.randperm(len(train_split), generator=gen)[: min(n, len(train_split))]
    scores["frechet_distance"] = frechet_distance(classifier.features(images), test_feats)
    scores["frechet_distance_train_vs_test"] = frechet_distance(
        classifier.features(to_float(train_split.images[subset])), test_feats
    )
    scores["n_test"], scores["n_train_subset"] = len(test_split), int(subset.numel())
    return scores


def sampler_name(rule: dict[str, Any]) -> str:
    """ "ddpm (beta-tilde)", "ddim (eta 0)", "dpm++2m": how a sampling run's step rule is reported."""
    name = rule.get("sampler", "ddpm")
    if name == "ddpm":
        return f"ddpm ({rule.get('variance', 'auto')})"
    if name == "ddim":
        return f"ddim (eta {rule.get('eta', 0.0):g})"
    return name


def ordered_pairs(num_classes: int) -> list[tuple[int, int]]:
    """Every ordered pair (a, b) of different classes: 90 for 10 classes."""
    return [(a, b) for a in range(num_classes) for b in range(num_classes) if a != b]


def _pair_conds(
    model: Any, pairs: Sequence[tuple[int, int]], n_per_pair: int
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
    first = torch.tensor([a for a, _ in pairs]).repeat_interleave(n_per_pair)
    second = torch.tensor([b for _, b in pairs]).repeat_interleave(n_per_pair)
    eye = torch.eye(model.num_classes, device=model.device)
    return first, second, (eye[first.to(model.device)], eye[second.to(model.device)])


@torch.no_grad()
def evaluate_anagrams(
    model: Any,
    classifier: Scorer,
    view: str = "rot180",
    n_per_pair: int = 1,
    cfg_scale: float | None = None,
    seed: int = 0,
    pairs: Sequence[tuple[int, int]] | None = None,
    timesteps: Sequence[int] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Visual anagrams (edits.anagram, the course's strided sampler) for every ordered class pair (prompt 1 upright,
    prompt 2 through `view`), all pairs in one batch; scores with `anagram_success` (overall and per pair)."""
    from diffusionlab import edits
    from diffusionlab.views import get_view

    model.require("class", "ddpm", "anagram evaluation")
    pairs = list(pairs or ordered_pairs(model.num_classes))
    first, second, (c1, c2) = _pair_conds(model, pairs, n_per_pair)
    gen = torch.Generator("cpu").manual_seed(int(seed))
    v = get_view(view, model.image_shape, model.value_range, seed)
    start = time.perf_counter()
    x = edits.anagram(
        model, c1, c2, v, len(first), cfg_scale, generator=gen, timesteps=timesteps, seed=seed, progress=progress
    )
    seconds = time.perf_counter() - start
    images = to_unit(x.cpu(), model.value_range)
    unit_view = get_view(view, model.image_shape, (0.0, 1.0), seed)  # the same view, acting on [0, 1] images
    scores = anagram_success(classifier, images, unit_view, first, second)
    ok = (classifier.classify(images) == first) & (classifier.classify(unit_view.apply(images).clamp(0, 1)) == second)
    per_pair = {
        f"{a}->{b}": float(ok[i * n_per_pair : (i + 1) * n_per_pair].float().mean()) for i, (a, b) in enumerate(pairs)
    }
    return {
        "view": view,
        "n_pairs": len(pairs),
        "n_per_pair": n_per_pair,
        "cfg_scale": cfg_scale,
        "seed": seed,
        **{f"anagram_{k}": val for k, val in scores.items()},
        "per_pair": per_pair,
        "sample_seconds": round(seconds, 2),
        "images": images,
    }


@torch.no_grad()
def evaluate_hybrids(
    model: Any,
    classifier: Scorer,
    n_per_pair: int = 1,
    cfg_scale: float | None = None,
    seed: int = 0,
    pairs: Sequence[tuple[int, int]] | None = None,
    timesteps: Sequence[int] | None = None,
    factor: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Hybrid images (edits.hybrid) for every ordered class pair (low-pass prompt, high-pass prompt), one batch;
    scores with `hybrid_scores`."""
    from diffusionlab import edits

    model.require("class", "ddpm", "hybrid evaluation")
    pairs = list(pairs or ordered_pairs(model.num_classes))
    low, high, (c_low, c_high) = _pair_conds(model, pairs, n_per_pair)
    gen = torch.Generator("cpu").manual_seed(int(seed))
    start = time.perf_counter()
    x = edits.hybrid(
        model, c_low, c_high, len(low), scale=cfg_scale, generator=gen, timesteps=timesteps, progress=progress
    )
    seconds = time.perf_counter() - start
    images = to_unit(x.cpu(), model.value_range)
    scores = hybrid_scores(classifier, images, low, high, factor)
    return {
        "n_pairs": len(pairs),
        "n_per_pair": n_per_pair,
        "cfg_scale": cfg_scale,
        "seed": seed,
        "far_factor": factor,
        **{f"hybrid_{k}": val for k, val in scores.items()},
        "sample_seconds": round(seconds, 2),
        "images": images,
    }


def format_scores(scores: dict[str, Any], class_names: Sequence[str] | None = None) -> str:
    """The score table `diffusionlab evaluate` prints."""
    rows = [
        ("model", str(scores["model"])),
        (
            "samples",
            f"{scores['n_samples']} ({scores['n_per_class']} per class), CFG {scores['cfg_scale']}, "
            f"{scores['sampler']} {scores['steps'] or 'all'} steps, seed {scores['seed']}",
        ),
        ("conditional accuracy", f"{100 * scores['conditional_accuracy']:.2f} %"),
        ("background std (raw samples)", f"{scores['background_std']:.4f}"),
    ]
    if scores.get("frechet_distance") is None:
        rows.append(("Frechet distance", "not computed: it needs the test set (--data-dir, or the data in the cache)"))
    else:
        fd, ref = scores["frechet_distance"], scores["frechet_distance_train_vs_test"]
        rows.append(("Frechet distance (samples vs test)", f"{fd:.3f} ({fd / ref:.1f}x the train-vs-test floor)"))
        rows.append(("Frechet distance (train vs test, same N)", f"{ref:.3f}"))
    if scores.get("classifier_test_accuracy") is not None:
        rows.append(("classifier test accuracy", f"{100 * scores['classifier_test_accuracy']:.2f} %"))
    names = list(class_names or [str(i) for i in range(len(scores["per_class_accuracy"]))])
    per = ", ".join(f"{names[i]} {100 * a:.0f}%" for i, a in enumerate(scores["per_class_accuracy"]) if a is not None)
    rows.append(("per class", per))
    if "anagram" in scores:
        a = scores["anagram"]
        rows.append(
            (
                f"anagram success ({a['view']}, {a['n_pairs']} pairs)",
                f"{100 * a['anagram_success']:.2f} % (upright {100 * a['anagram_first']:.1f} %, "
                f"viewed {100 * a['anagram_second']:.1f} %)",
            )
        )
    if "hybrid" in scores:
        h = scores["hybrid"]
        rows.append(
            (
                f"hybrid success ({h['n_pairs']} pairs)",
                f"{100 * h['hybrid_success']:.2f} % (far {100 * h['hybrid_far']:.1f} %, near {100 * h['hybrid_near']:.1f} %)",
            )
        )
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
