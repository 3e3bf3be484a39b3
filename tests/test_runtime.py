"""runtime.free_cores: the threads worth using follow what the machine does now (the kernel's CPU counters), and
fall back to the load average where there are none."""

from __future__ import annotations

import os

import pytest

from diffusionlab import runtime


def write_stat(path, user: int, idle: int, iowait: int = 0) -> str:
    path.write_text(f"cpu  {user} 0 0 {idle} {iowait} 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    return str(path)


def test_cpu_ticks_reads_all_and_idle_time(tmp_path):
    stat = write_stat(tmp_path / "stat", user=700, idle=250, iowait=50)
    assert runtime.cpu_ticks(stat) == (1000, 300)
    assert runtime.cpu_ticks(str(tmp_path / "missing")) is None
    (tmp_path / "other").write_text("intr 1 2 3\n")
    assert runtime.cpu_ticks(str(tmp_path / "other")) is None


@pytest.mark.parametrize(
    ("first", "second", "share"),
    [((1000, 300), (1400, 500), 0.5), ((1000, 300), (1200, 300), 1.0), ((1000, 300), (1100, 400), 0.0)],
)
def test_busy_share_is_the_non_idle_fraction_between_readings(first, second, share):
    assert runtime.busy_share(first, second) == pytest.approx(share)


def test_busy_share_without_elapsed_time_is_unknown():
    assert runtime.busy_share((1000, 300), (1000, 300)) is None


@pytest.mark.parametrize(
    ("busy", "cores", "threads", "free"),
    [(0.1, 2, 2, 2), (1.0, 2, 2, 1), (1.9, 2, 2, 1), (0.4, 8, 4, 4), (5.0, 8, 8, 3)],
)
def test_free_cores_leaves_the_busy_cores_to_others(monkeypatch, busy, cores, threads, free):
    monkeypatch.setattr(runtime, "busy_cores", lambda: busy)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(runtime.torch, "get_num_threads", lambda: threads)
    assert runtime.free_cores() == free


def test_free_cores_ignores_a_load_average_of_work_that_has_ended(monkeypatch):
    """The 1-minute load average still counts a job stopped seconds ago; the counters of now decide."""
    monkeypatch.setattr(runtime, "busy_cores", lambda: 0.05)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 2.0, 2.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(runtime.torch, "get_num_threads", lambda: 2)
    assert runtime.free_cores() == 2


def test_free_cores_falls_back_to_the_load_average_without_counters(monkeypatch):
    monkeypatch.setattr(runtime, "busy_cores", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 0.0, 0.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(runtime.torch, "get_num_threads", lambda: 4)
    assert runtime.free_cores() == 3
