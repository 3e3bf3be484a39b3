"""The report's Scores section over all 90 ordered pairs: the anagrams' per-pair map (as `evaluate --anagram`
draws it) next to the grids, from the same per-pair rates as scores.json."""

from __future__ import annotations

import json
from dataclasses import replace

from conftest import make_idx_dir
from PIL import Image
from test_report import TINY, make_weights

from diffusionlab import report
from diffusionlab.evaluation.metrics import score_map


def test_full_pair_scores_show_the_per_pair_map(tmp_path):
    weights = make_weights(tmp_path)
    data = make_idx_dir(tmp_path / "data" / "mnist", n_train=20, n_test=20)
    out = tmp_path / "r"
    budget = replace(TINY, anagram_pairs=None, score_steps=2)
    res = report.reproduce(
        out, data_dir=data, weights=weights, budget=budget, sections=["scores"], progress=False, device="cpu"
    )  # fmt: skip
    figures = res["sections"][0]["figures"]
    assert [f.rsplit("/", 1)[1] for f in figures] == ["scores_anagrams.png", "scores_anagram_map.png"]
    live = json.loads((out / "scores.json").read_text())["live"]["anagram"]
    assert live["n_pairs"] == 90 and len(live["per_pair"]) == 90
    title = f"anagram success per pair, rot180: {100 * live['anagram_success']:.0f} % overall"
    want = score_map(live["per_pair"], [str(i) for i in range(10)], title, "upright", "rotated")
    with Image.open(out / figures[1]) as got:
        assert got.convert("RGB").tobytes() == want.tobytes()
