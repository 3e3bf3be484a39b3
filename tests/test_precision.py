"""--precision: fp32/bf16 as asked; "auto" picks bf16 only where a measured micro-benchmark says it is faster
(cached per CPU model, torch version and threads; a corrupt cache is ignored); the choice and why reach the run's
first line and its provenance; every command takes --precision and --threads."""

from __future__ import annotations

import json

import pytest
import torch

from diffusionlab import precision
from diffusionlab.cli import app, main
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_files import load_checkpoint

CPU = torch.device("cpu")


@pytest.fixture
def native(monkeypatch):
    """A CPU that computes bf16 natively, whose benchmark gives the speed-up set in calls['speedup']."""
    calls = {"n": 0, "speedup": 1.0}

    def fake_benchmark(*args, **kwargs):
        calls["n"] += 1
        return calls["speedup"]

    monkeypatch.setattr(precision, "bf16_native", lambda device: True)
    monkeypatch.setattr(precision, "bf16_speedup_now", fake_benchmark)
    return calls


def test_asked_precisions_are_kept():
    for name in ("fp32", "bf16"):
        choice = precision.choose_precision(CPU, name)
        assert (choice.name, choice.reason) == (name, "asked for")
    assert precision.choose_precision(CPU, "bf16").autocast_dtype is torch.bfloat16
    assert precision.choose_precision(CPU, "fp32").autocast_dtype is None
    with pytest.raises(DiffusionLabError, match="unknown precision 'fp16'; choose auto, fp32, bf16"):
        precision.choose_precision(CPU, "fp16")


def test_auto_without_native_bf16_is_fp32_without_measuring(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "bf16_native", lambda device: False)
    monkeypatch.setattr(precision, "bf16_speedup_now", lambda *a, **k: pytest.fail("measured"))
    choice = precision.choose_precision(CPU, "auto", cache_dir=tmp_path)
    assert choice.name == "fp32" and "has no native bf16" in choice.reason
    assert not (tmp_path / precision.CACHE_NAME).exists()


@pytest.mark.parametrize(("speedup", "expected"), [(0.91, "fp32"), (1.05, "fp32"), (1.1, "bf16"), (3.23, "bf16")])
def test_auto_follows_the_measurement_and_caches_it(native, tmp_path, speedup, expected):
    """0.91x is the AVX512-BF16-without-AMX Xeon of issue 36, 3.23x the AMX one; below 1.1x fp32 is kept."""
    native["speedup"] = speedup
    first = precision.choose_precision(CPU, "auto", cache_dir=tmp_path)
    second = precision.choose_precision(CPU, "auto", cache_dir=tmp_path)
    assert first.name == second.name == expected
    assert native["n"] == 1  # measured once, then read from the cache
    assert "measured now" in first.reason and "cached measurement" in second.reason
    assert f"{speedup:.2f}x" in first.reason
    cache = json.loads((tmp_path / precision.CACHE_NAME).read_text())
    assert cache[precision.cache_key()]["bf16_speedup"] == pytest.approx(speedup)
    assert torch.__version__ in precision.cache_key() and precision.cpu_name() in precision.cache_key()


def test_the_cached_verdict_is_per_cpu_generation_not_per_name(monkeypatch):
    """Two CPUs a cloud VM both calls "AMD EPYC" (seen here: AVX2-only Zen, and Zen 5 with AVX512-BF16 where bf16
    measured 2.8x) must not share one cached verdict; the run's first line keeps the plain name."""
    zen3 = {"model name": "AMD EPYC", "cpu family": "25", "model": "1", "flags": "fpu avx2 fma"}
    zen5 = {"model name": "AMD EPYC", "cpu family": "26", "model": "2", "flags": "avx2 avx512f avx512_bf16"}
    keys = []
    for info in (zen3, zen5, zen5):
        monkeypatch.setattr(precision, "_cpuinfo", lambda info=info: dict(info))
        assert precision.cpu_name() == "AMD EPYC"
        keys.append(precision.cache_key())
    assert keys[0] != keys[1] == keys[2]
    assert "family 25 model 1, no bf16 flags" in keys[0] and "family 26 model 2, avx512_bf16" in keys[1]


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\xff garbage",
        b"[1, 2]",
        b'{"KEY": "fast"}',
        b'{"KEY": {"bf16_speedup": "3x"}}',
        b'{"KEY": {"bf16_speedup": -1}}',
    ],
)
def test_a_corrupt_cache_is_ignored_and_rewritten(native, tmp_path, content):
    (tmp_path / precision.CACHE_NAME).write_bytes(content.replace(b"KEY", precision.cache_key().encode()))
    native["speedup"] = 0.5
    assert precision.choose_precision(CPU, "auto", cache_dir=tmp_path).name == "fp32"
    assert native["n"] == 1
    assert json.loads((tmp_path / precision.CACHE_NAME).read_text())[precision.cache_key()]["bf16_speedup"] == 0.5


def test_an_unwritable_cache_only_means_measuring_again(native, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    native["speedup"] = 2.0
    for _ in range(2):
        assert precision.choose_precision(CPU, "auto", cache_dir=blocker).name == "bf16"
    assert native["n"] == 2


def test_the_real_benchmark_measures_both_precisions():
    """bf16 autocast runs on any x86 CPU (emulated where not native), so the benchmark runs everywhere."""
    torch.set_num_threads(1)
    speedup = precision.bf16_speedup_now(batch=2, repeats=1)
    assert 0 < speedup < 100 and speedup == speedup


def test_the_cli_default_and_the_environment(monkeypatch):
    precision.set_default_precision(None)
    monkeypatch.setenv("DIFFUSIONLAB_PRECISION", "BF16")
    assert precision.requested_precision() == "bf16"
    assert precision.requested_precision("fp32") == "fp32"  # a call's own value wins
    precision.set_default_precision("fp32")  # --precision wins over the environment
    try:
        assert precision.requested_precision() == "fp32"
    finally:
        precision.set_default_precision(None)
    monkeypatch.setenv("DIFFUSIONLAB_PRECISION", "fp16")
    with pytest.raises(DiffusionLabError, match=r"DIFFUSIONLAB_PRECISION='fp16': choose auto, fp32, bf16"):
        precision.requested_precision()


def test_every_command_takes_threads_and_precision():
    for command in app.registered_commands:
        params = {p.name for p in typer_params(command.callback)}
        assert {"threads", "precision"} <= params, command.callback.__name__


def typer_params(callback):
    import inspect

    return inspect.signature(callback).parameters.values()


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--precision", "fp16"], {}, "unknown precision 'fp16'; choose auto, fp32, bf16"),
        ([], {"DIFFUSIONLAB_PRECISION": "half"}, "DIFFUSIONLAB_PRECISION='half': choose auto, fp32, bf16"),
        ([], {"DIFFUSIONLAB_THREADS": "abc"}, "DIFFUSIONLAB_THREADS='abc' is not an integer"),
        ([], {"DIFFUSIONLAB_THREADS": "0"}, "DIFFUSIONLAB_THREADS=0 must be at least 1"),
    ],
)
def test_bad_precision_or_threads_is_one_line(tmp_path, monkeypatch, capsys, argv, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "n.png"
    with pytest.raises(SystemExit) as e:
        main(["noise", "--image", "test:0", "--out", str(out), *argv])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()
    precision.set_default_precision(None)


@pytest.mark.parametrize("name", ["fp32", "bf16"])
def test_train_says_its_precision_first_and_records_it(tiny_data, tmp_path, capsys, name):
    threads = torch.get_num_threads()
    args = ["train", "class", "--data-dir", str(tiny_data), "--hidden", "8", "--num-steps", "20", "--batch-size", "8"]
    args += ["--max-steps", "2", "--no-figures", "--device", "cpu", "--out", str(tmp_path / "run")]
    try:
        with pytest.raises(SystemExit) as e:
            main([*args, "--precision", name, "--threads", "1"])
        assert e.value.code in (0, None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
        precision.set_default_precision(None)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("training on cpu") and first.endswith(f"1 thread, precision {name} (asked for)"), first
    _, config = load_checkpoint(tmp_path / "run")
    session = config["provenance"]["history"][-1]
    assert (session["precision"], session["precision_reason"], session["threads"]) == (name, "asked for", 1)
