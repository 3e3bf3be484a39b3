"""The held-out judge's scores of illusion_table's rows (issue 37): the readings of a row's images, best-of-K
ranked by one classifier and scored by another, the judge's success and per-pair map, and judging saved images
later (--rejudge)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

KEY_FIELDS = (
    "kind", "view", "steps", "rule", "cfg", "combine", "weights", "balance", "judge", "ranker", "pairs", "kernel",
    "sigma", "n_per_pair", "seed", "model", "far_factor", "near_cfg", "lowpass",
)  # fmt: skip


def key(row: dict) -> str:
    """What makes two rows the same measurement; sorted, as a row and the probe that looks for it list their
    fields in different orders."""
    return json.dumps({k: v for k, v in row.items() if k in KEY_FIELDS}, sort_keys=True)


def readings(kind: str, view: str | None, model, images):
    """The readings of images in [0, 1] as the scores take them: (upright, viewed) or (far, near)."""
    from diffusionlab.evaluation.metrics import far_view
    from diffusionlab.views import get_view

    if kind == "hybrid":
        return [far_view(images), images]
    return [images, get_view(view, model.image_shape).apply(images, (0.0, 1.0)).clamp(0, 1)]


def pair_labels(model, n: int, only: str | None):
    from diffusionlab.evaluation.pairs import ordered_pairs

    pairs = parse_pairs(only) or ordered_pairs(model.num_classes)
    first = torch.tensor([a for a, _ in pairs]).repeat_interleave(n)
    return first, torch.tensor([b for _, b in pairs]).repeat_interleave(n)


def ranked_picks(rank_clf, reads, labels, k: int) -> torch.Tensor:
    """The candidate verified best-of-k (tools.illusions.verified) keeps in each group of k (pair-major): one
    image index per group, what `--best-of k` returns. rank_clf ranks, as the tool does."""
    from diffusionlab.tools.illusions import verified

    picks = []
    for g in range(len(labels[0]) // k):  # one group = one request: k candidates of one pair
        sl = slice(g * k, (g + 1) * k)
        rows, _ = verified([r[sl] for r in reads], [int(lab[g * k]) for lab in labels], rank_clf, 1, k)
        picks.append(g * k + int(rows[0, 0]))
    return torch.tensor(picks)


def kept_share(ok: torch.Tensor, picks: torch.Tensor) -> float:
    """The share of the kept images (picks) that pass (ok: per image)."""
    return int(ok[picks].sum()) / len(picks)


def ranked_best_of(rank_clf, reads, labels, k: int, judge) -> float:
    """Success of verified best-of-k from the readings in groups of k: rank_clf picks (ranked_picks), judge says
    whether the kept one succeeds."""
    return kept_share(passes(judge, reads, labels), ranked_picks(rank_clf, reads, labels, k))


def reading_hits(clf, reads, labels):
    """(R, N): whether clf reads each reading of each image as its label."""
    return torch.stack([clf.classify(r) == lab for r, lab in zip(reads, labels, strict=True)])


def passes(clf, reads, labels):
    """Per image: every reading read as its label by clf."""
    return reading_hits(clf, reads, labels).all(0)


def judged(row: dict, kind: str, view, model, images, n: int, k: int, pairs, rankers: dict, judge) -> dict:
    """The judge's scores of a row's images (and, with k, best-of-k ranked by each ranker, scored by the ranker
    that ranks and by the judge). rankers: {"ranker": the one that steered and ranks as the tool, "single": the
    shipped classifier alone, for comparison}."""
    from diffusionlab.evaluation.pairs import per_pair

    reads, labels = readings(kind, view, model, images), pair_labels(model, n, pairs)
    hits = reading_hits(judge, reads, labels)  # the judge reads every image once
    ok = hits.all(0)
    pp = per_pair(ok, parse_pairs(pairs) or _pairs(row), n)
    row |= {"judge_success": float(ok.float().mean()), "judge_per_pair": pp}
    row |= {"judge_first": float(hits[0].float().mean()), "judge_second": float(hits[1].float().mean())}
    if k > 1 and n % k == 0:
        ranker = rankers["ranker"]
        picks = ranked_picks(ranker, reads, labels, k)  # ranked once, graded by the ranker and by the judge
        row |= {"best_of": k, "best_success": kept_share(passes(ranker, reads, labels), picks)}
        row |= {"best_judge": kept_share(ok, picks)}
        if "single" in rankers:
            row |= {"best_judge_single_rank": kept_share(ok, ranked_picks(rankers["single"], reads, labels, k))}
    return row


def _pairs(row: dict) -> list[tuple[int, int]]:
    return [tuple(int(x) for x in p.split("->")) for p in row["per_pair"]]


def parse_pairs(text: str | None) -> list[tuple[int, int]] | None:
    """ "1-3,3-1" -> [(1, 3), (3, 1)]; None: every ordered pair."""
    if not text:
        return None
    return [(int(a), int(b)) for a, b in (p.split("-") for p in text.split(","))]


def image_file(row: dict) -> str:
    """The file name of a row's saved images (--images): its settings, without the judge; a long list of pairs
    (over 200 characters in all) by its hash."""
    fields = {k: v for k, v in row.items() if k in KEY_FIELDS and v is not None and k != "judge"}
    if "model" in fields:  # a path: its file or folder name
        fields["model"] = Path(str(fields["model"])).name
    name = "-".join(str(v) for v in fields.values())
    if len(name) > 200 and "pairs" in fields:
        fields["pairs"] = "pairs" + hashlib.sha1(fields["pairs"].encode()).hexdigest()[:10]
        name = "-".join(str(v) for v in fields.values())
    return name + ".pt"


def rejudge(
    path: Path, rows: list[dict], folder: Path, judge, judge_name: str, k: int, rankers: dict, model, ranker: str
) -> None:
    """Score the saved images of rows measured without a judge (--judge none --images DIR) by the judge, later
    (e.g. once it is trained); the rows file is rewritten with the judged rows."""
    for i, row in enumerate(rows):
        f = folder / image_file(row)
        if "judge_success" in row or not f.is_file() or row.get("ranker") != ranker:
            continue
        n = row["n_per_pair"]
        rows[i] = judged(row, row["kind"], row["view"], model, torch.load(f), n, k, row.get("pairs"), rankers, judge)
        rows[i] |= {"judge": judge_name}
        print(f"judged {f.name}: {100 * rows[i]['judge_success']:.1f} %", flush=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def load_judge(path: str):
    """The held-out judge (benchmarks/judges/train.py's LeNet), the development judge (its MLP) or a classifier
    file of ours."""
    import json

    if json.loads(Path(path).with_suffix(".json").read_text()).get("kind") in ("judge", "development judge"):
        sys.path.insert(0, str(Path(__file__).parent / "judges"))
        from train import load_judge as load

        return load(path)
    from diffusionlab.evaluation.classifier import load_classifier

    return load_classifier(path, "cpu")
