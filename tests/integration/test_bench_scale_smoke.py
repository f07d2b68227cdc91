"""The scale benchmark end to end on a tiny seed, so that it cannot rot: it seeds its
throwaway database, signs in, and every read it times answers 200 (the benchmark stops
on any other status)."""

from __future__ import annotations

import pytest

from benchmarks import scale


def test_the_scale_benchmark_seeds_and_times_every_read(
    pg_server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = scale.main(
        ["--patients", "120", "--runs", "2", "--program-runs", "1",
         "--database-url", pg_server_url]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status in (0, 1), out  # 1: a target missed, which a tiny seed on a busy machine may
    assert "seeding took" in out
    # A line a read: its name, whose view, runs, p50, p99, target, verdict, its size.
    timed = {
        (line[:26].strip(), line[27:35].strip())
        for line in out.splitlines()
        if line[27:35].strip() in ("team", "program")
    }
    assert timed == {(r.name, r.who) for r in scale.reads(48, 1, "2026-11")}
    assert "overall: " in out
