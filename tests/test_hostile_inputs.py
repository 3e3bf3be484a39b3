"""The bad-input corpus, round 2 (issue 38): weights that are not what they claim, prompts that are not a class,
special files where a file is read, files that amplify memory under the caps, a bad environment. Same rules as
tests/test_bad_inputs.py (whose `paths` fixture and helpers this reuses): exit status 2, one line `error: ...`
holding the expected words, the output folder unchanged. Each memory bomb is also run in a child process whose
peak memory must stay under 1 GB; the web UI's cases are in tests/test_bad_inputs_app.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from bad_input_files import idx_bombs, special_files, strip_png
from parta_helpers import one_thread  # noqa: F401  (autouse fixture)
from safetensors.torch import load_file, save_file
from test_bad_inputs import full_argv, output_folder, paths, run, snapshot  # noqa: F401  (paths: a fixture)

from diffusionlab import progress
from diffusionlab.backends import shipped_weights_dir
from diffusionlab.course_model import class_index
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_files import FORMAT, WEIGHTS_NAME


class Case(NamedTuple):
    id: str
    argv: list[str]
    expect: str
    env: dict[str, str] = {}


def model_cases(expect_by_name: dict[str, str], command: str = "sample") -> list[Case]:
    return [Case(f"{command}-model-{n}", [command, "--model", f"{{w[{n}]}}"], e) for n, e in expect_by_name.items()]


NOISE = ["noise", "--t", "10", "-i"]
TRAIN_BOMB = ["train", "class", "--data-dir"]
TORCHRUN = {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
WEIGHTS = [  # weights that are not what they claim: dtype, finiteness, the kind and shapes of the network
    *model_cases(
        {
            "all_nan": "tensor 'c1.0.bias' holds 16 NaN or infinite values of 16",
            "one_inf": "tensor 'u1.0.0.weight' holds 1 NaN or infinite values",
            "one_nan_fp16": "tensor 'out.bias' holds 1 NaN",
            "int32": "is int32; weights must be floating point",
            "bool": "is bool; weights must be floating point",
            "kind_time_over_class": '"kind" is \'time\' but its network ("unet") takes time and 10 classes',
            "kind_class_over_time": '"kind" is \'class\' but its network ("unet") takes time',
            "kind_denoiser_over_class": "\"kind\" is 'denoiser' but its network",
            "kind_unknown": "a course model is one of denoiser, time, class",
            "tensor_missing": "weights do not fit the config's class network (its 'unet' entry): 'out.bias' is missing",
            "tensor_extra": "'extra.weight' is not in it (1 tensors too many)",
            "shape_differs": "'out.bias' is [2] in the file, [1] in the network",
        }
    ),
    *model_cases({"all_nan": "NaN or infinite", "int32": "is int32"}, "evaluate"),
    Case("noise-model-one_inf", [*NOISE, "{img[digit]}", "--model", "{w[one_inf]}"], "NaN or infinite"),
    Case("evaluate-classifier-nan", ["evaluate", "--classifier", "{w[clf_nan]}"], "holds 10 NaN or infinite values"),
    Case("evaluate-classifier-int32", ["evaluate", "--classifier", "{w[clf_int32]}"], "is int32"),
    Case(
        "evaluate-classifier-tensor-missing",
        ["evaluate", "--classifier", "{w[clf_missing]}"],
        "'head.1.bias' is missing",
    ),
]
PROMPTS = [  # only known names and digits; '' is the one way to ask for no class
    *[
        Case(f"sample-prompt-{name}", ["sample", "-p", prompt], f"unknown prompt {prompt!r}; valid prompts")
        for name, prompt in [
            ("emoji", "🙂"),
            ("punctuation", "?!"),
            ("minus-one", "-1"),
            ("one-dot", "1."),
            ("one-bang", "one!"),
            ("ten", "10"),
            ("zero-one", "01"),
            ("none-word", "none"),
            ("fashion-name-on-digits", "sneaker"),
            ("tab-in-word", "th\tree"),
        ]
    ],
    Case("anagram-prompt-minus-one", ["anagram", "-p", "6", "-p", "-1"], "unknown prompt '-1'"),
    Case("hybrid-prompt-one-dot", ["hybrid", "-p", "0", "-p", "1."], "unknown prompt '1.'"),
    Case("sdedit-prompt-emoji", ["sdedit", "-p", "🙂"], "unknown prompt '🙂'"),
]
SPECIAL = [  # regular files only: a pipe blocks the reader, a device never ends
    Case("sample-model-fifo-json", ["sample", "--model", "{s[fifo_json_run]}"], "model.json: is a named pipe (FIFO)"),
    Case(
        "sample-model-fifo-weights",
        ["sample", "--model", "{s[fifo_weights_run]}"],
        "model.safetensors: is a named pipe",
    ),
    Case("sample-model-dev-zero", ["sample", "--model", "/dev/zero"], "/dev/zero: is a character device"),
    Case("evaluate-classifier-fifo-json", ["evaluate", "--classifier", "{s[classifier_fifo_json]}"], "named pipe"),
    Case("noise-image-fifo", [*NOISE, "{s[fifo]}"], "pipe.png: is a named pipe (FIFO), not a regular file"),
    Case("noise-image-link-to-fifo", [*NOISE, "{s[link_to_fifo]}"], "link.png: is a named pipe (FIFO)"),
    Case("noise-image-dev-zero", [*NOISE, "/dev/zero"], "/dev/zero: is a character device"),
    Case("noise-image-link-to-dev-zero", [*NOISE, "{s[dev_zero_png]}"], "zero.png: is a character device"),
    Case("noise-image-dangling-link", [*NOISE, "{s[dangling]}"], "no such image file"),
    Case("noise-image-symlink-loop", [*NOISE, "{s[loop]}"], "no such image file"),
    Case("inpaint-mask-fifo", ["inpaint", "--mask", "{s[mask_fifo]}"], "mask.png: is a named pipe (FIFO)"),
    Case("train-data-fifo", [*TRAIN_BOMB, "{s[fifo_idx]}"], "train-images-idx3-ubyte.gz: is a named pipe (FIFO)"),
]
BUDGET = "more than the memory budget for a data set (268,435,456"
MEMORY = [  # declared sizes checked against the file and a budget before allocating; an aspect-ratio limit
    Case("train-data-sparse-10gb", [*TRAIN_BOMB, "{b[sparse_10gb]}"], f"declares 9,999,999,984 bytes, {BUDGET}"),
    Case("train-data-gzip-8gb", [*TRAIN_BOMB, "{b[gzip_8gb]}"], f"declares 8,589,934,432 bytes, {BUDGET}"),
    Case("train-data-gzip-underdeclared", [*TRAIN_BOMB, "{b[gzip_underdeclared]}"], "expands to more than 12,560"),
    Case("train-data-just-over-budget", [*TRAIN_BOMB, "{b[sparse_just_over_budget]}"], BUDGET),
    Case("noise-image-strip-39mp", [*NOISE, "{b[strip39m]}"], "1 x 39000000 pixels is too long and thin"),
    Case("noise-image-wide-strip", [*NOISE, "{b[wide]}"], "30000000 x 1 pixels is too long and thin"),
    Case("sdedit-image-strip", ["sdedit", "-i", "{b[strip39m]}"], "too long and thin (more than 20:1)"),
    Case("inpaint-mask-strip", ["inpaint", "--mask", "{b[strip39m]}"], "too long and thin"),
]
TRAIN_CACHED = ["train", "class", "--epochs", "1", "--max-steps", "1", "--hidden", "8", "--no-figures"]
ENVIRONMENT = [  # every variable checked in one place (diffusionlab.environment), one line each
    Case("train-world-size-abc", TRAIN_CACHED, "WORLD_SIZE='abc' is not an integer", {"WORLD_SIZE": "abc"}),
    Case("train-world-size-0", TRAIN_CACHED, "WORLD_SIZE=0 must be at least 1", {"WORLD_SIZE": "0"}),
    Case("train-world-size-2-no-rank", TRAIN_CACHED, "WORLD_SIZE=2 but RANK is not set", {"WORLD_SIZE": "2"}),
    Case("sample-world-size-2-no-rank", ["sample"], "WORLD_SIZE=2 but RANK is not set", {"WORLD_SIZE": "2"}),
    *[
        Case(f"train-torchrun-no-{v.lower()}", TRAIN_CACHED, f"but {v} is not set", {**TORCHRUN, v: ""})
        for v in ("MASTER_ADDR", "MASTER_PORT")
    ],
    Case("train-rank-past-world", TRAIN_CACHED, "RANK=2 must be below WORLD_SIZE=2", {**TORCHRUN, "RANK": "2"}),
    Case("train-master-port-99999", TRAIN_CACHED, "MASTER_PORT=99999 is not a port", {**TORCHRUN, "MASTER_PORT": "99999"}),
    Case("train-local-rank-x", TRAIN_CACHED, "LOCAL_RANK='x' is not an integer", {**TORCHRUN, "LOCAL_RANK": "x"}),
    Case("train-cache-dev-null", TRAIN_CACHED, "DIFFUSIONLAB_CACHE='/dev/null' is not a folder", {"DIFFUSIONLAB_CACHE": "/dev/null"}),
    Case(
        "train-cache-under-a-file",
        TRAIN_CACHED,
        "afile is not a folder, so no folder can be made there",
        {"DIFFUSIONLAB_CACHE": "{out}/afile/cache"},
    ),
    Case("sample-weights-dir-missing", ["sample", "--model", "mnist"], "is not in this install", {"DIFFUSIONLAB_WEIGHTS_DIR": "{out}/no"}),
    Case("sample-weights-dir-dev-null", ["sample", "--model", "mnist"], "is not a folder", {"DIFFUSIONLAB_WEIGHTS_DIR": "/dev/null"}),
    Case("evaluate-progress-maybe", ["evaluate"], "DIFFUSIONLAB_PROGRESS='maybe': use 1 or 0", {"DIFFUSIONLAB_PROGRESS": "maybe"}),
]  # fmt: skip
CASES = WEIGHTS + PROMPTS + SPECIAL + MEMORY + ENVIRONMENT


def _variant(d: Path, name: str, good: Path, tensors=None, config=None) -> Path:
    """A copy of the checkpoint `good` (a .safetensors file) with its tensors and/or config changed."""
    state, cfg = load_file(str(good)), json.loads(good.with_suffix(".json").read_text())
    (d / name).mkdir(parents=True)
    target = d / name / good.name
    save_file(tensors(state) if tensors else state, str(target), {"format": FORMAT})
    target.with_suffix(".json").write_text(json.dumps(config(cfg) if config else cfg))
    return target


def _set(key: str, value):
    return lambda state: {**state, key: value(state[key])}


def weight_variants(d: Path, run: Path) -> dict[str, Path]:
    good = run / WEIGHTS_NAME
    nan = float("nan")
    v = {
        "all_nan": dict(tensors=lambda s: {k: t.float().fill_(nan) if t.is_floating_point() else t for k, t in s.items()}),
        "one_inf": dict(tensors=_set("u1.0.0.weight", lambda t: t.flatten().index_fill(0, torch.tensor([5]), float("inf")).view_as(t))),
        "one_nan_fp16": dict(tensors=_set("out.bias", lambda t: t.half().fill_(nan))),
        "int32": dict(tensors=lambda s: {k: t.to(torch.int32) if t.is_floating_point() else t for k, t in s.items()}),
        "bool": dict(tensors=_set("e1.0.0.weight", lambda t: t > 0)),
        "kind_time_over_class": dict(config=lambda c: {**c, "kind": "time"}),
        "kind_class_over_time": dict(config=lambda c: {**c, "kind": "class", "unet": {**c["unet"], "num_classes": 0}}),
        "kind_denoiser_over_class": dict(config=lambda c: {**c, "kind": "denoiser"}),
        "kind_unknown": dict(config=lambda c: {**c, "kind": "banana"}),
        "tensor_missing": dict(tensors=lambda s: {k: t for k, t in s.items() if k != "out.bias"}),
        "tensor_extra": dict(tensors=lambda s: {**s, "extra.weight": torch.zeros(3)}),
        "shape_differs": dict(tensors=_set("out.bias", lambda t: torch.zeros(2))),
    }  # fmt: skip
    out = {name: _variant(d, name, good, **kw).parent for name, kw in v.items()}
    clf = shipped_weights_dir() / "mnist-classifier.safetensors"
    out["clf_nan"] = _variant(d, "clf_nan", clf, _set("head.1.bias", lambda t: t.float().fill_(nan)))
    out["clf_int32"] = _variant(d, "clf_int32", clf, _set("head.1.weight", lambda t: t.to(torch.int32)))
    out["clf_missing"] = _variant(d, "clf_missing", clf, lambda s: {k: t for k, t in s.items() if k != "head.1.bias"})
    return out


@pytest.fixture(scope="module")
def hostile(paths, tmp_path_factory) -> dict:  # noqa: F811  (test_bad_inputs' fixture)
    root = tmp_path_factory.mktemp("hostile")
    bombs = idx_bombs(root / "bombs")
    bombs["strip39m"] = strip_png(root / "bombs" / "strip39m.png", 1, 39_000_000)
    bombs["wide"] = strip_png(root / "bombs" / "wide.png", 30_000_000, 1)
    return {
        **paths,
        "w": weight_variants(root / "weights", paths["ckpt"]["good"]),
        "s": special_files(root / "special", paths["ckpt"]["good"]),
        "b": bombs,
    }


def argv_of(case: Case, files: dict, out: Path) -> list[str]:
    """test_bad_inputs' command line (its defaults, --model, --out); without --data-dir where the case is about
    the data cache."""
    argv = full_argv(case, files, out)
    if "DIFFUSIONLAB_CACHE" in case.env:
        at = argv.index("--data-dir")
        del argv[at : at + 2]
    return argv


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_error_line_and_changes_nothing(case: Case, hostile, tmp_path, capsys, monkeypatch):
    out = output_folder(tmp_path)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.format(out=out))
    monkeypatch.setitem(progress._state, "enabled", None)  # read $DIFFUSIONLAB_PROGRESS afresh
    before = snapshot(out)
    code, _, err = run(argv_of(case, hostile, out), capsys)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert case.expect in err, err
    assert snapshot(out) == before


def test_corpus_kinds():
    """Round 2 in numbers (pytest -s shows them); the web UI adds its own (tests/test_bad_inputs_app.py)."""
    kinds = dict(weights=WEIGHTS, prompts=PROMPTS, special_files=SPECIAL, memory=MEMORY, environment=ENVIRONMENT)
    print("\nround-2 corpus: " + ", ".join(f"{len(v)} {k}" for k, v in kinds.items()) + f" = {len(CASES)} CLI cases")
    assert len({c.id for c in CASES}) == len(CASES)


# -- the prompts that work -----------------------------------------------------------------------------------
DIGITS = [str(d) for d in range(10)]
FASHION = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


@pytest.mark.parametrize(
    "prompt, names, index",
    [
        ("3", DIGITS, 3),
        (" Three ", DIGITS, 3),
        (3, DIGITS, 3),  # a Python int from the API: a class index
        ("", DIGITS, None),  # the one way to ask for no class
        ("  ", DIGITS, None),
        ("T-shirt/top", FASHION, 0),
        ("tshirt", FASHION, 0),
        ("Top", FASHION, 0),
        ("Ankle Boot", FASHION, 9),
        ("ankle-boot", FASHION, 9),
        ("9", FASHION, 9),
    ],
)
def test_known_prompts(prompt, names, index):
    assert class_index(prompt, names) == index


@pytest.mark.parametrize("prompt", [10, -1, True, 3.0, "nine"])
def test_other_prompts_list_the_valid_ones(prompt):
    """Out-of-range indices, a bool or a float, a digit's name on Fashion-MNIST: one line with the valid prompts."""
    with pytest.raises(DiffusionLabError, match=r"valid prompts for this model: 0=t-shirt/top, 1=trouser"):
        class_index(prompt, FASHION)


def test_api_takes_class_indices(hostile):
    """dl.sample(m, [3]) samples class 3: the same images as the prompt "3"."""
    import diffusionlab as dl

    model = dl.load_model(hostile["ckpt"]["good"], "cpu")
    by_index = dl.sample(model, [3], n=1, steps=2, progress=False).images
    by_text = dl.sample(model, ["3"], n=1, steps=2, progress=False).images
    assert torch.equal(by_index, by_text)


# -- memory: each bomb refused in a child process whose peak stays under 1 GB ----------------------------------
PEAK_LIMIT_KB = 2**20  # 1 GB, in VmHWM's kilobytes
# The child's own peak is /proc/self/status's VmHWM (its address space's high-water mark). Not ru_maxrss: Linux
# carries that across fork+exec, so under a long pytest run it reports the pytest process's peak (1025 MB on CI).
PEAK_OF_CHILD = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"
MEASURED = {
    "train-data-sparse-10gb": "sparse_10gb",
    "train-data-gzip-8gb": "gzip_8gb",
    "noise-image-strip-39mp": "strip39m",
}


@pytest.mark.slow  # a child process (the CLI's imports) per case
@pytest.mark.parametrize("case_id", MEASURED)
def test_memory_bombs_are_refused_in_under_1_gb(case_id, hostile, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    argv = argv_of(case, hostile, output_folder(tmp_path))
    child = (
        "import sys\n"
        "from diffusionlab.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        f"print('peak', {PEAK_OF_CHILD}, 'code', code, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", child, *argv], capture_output=True, text=True, timeout=300)
    *lines, last = proc.stderr.strip().splitlines()
    peak_kb, code = int(last.split()[1]), last.split()[3]
    print(f"\n{case_id}: peak {peak_kb / 1024:.0f} MB, exit {code}")
    assert code == "2" and len(lines) == 1 and case.expect in lines[0], proc.stderr
    assert peak_kb < PEAK_LIMIT_KB
