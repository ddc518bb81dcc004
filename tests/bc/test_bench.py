"""``python -m bc.bench`` on a tiny synthetic dataset."""

from __future__ import annotations

import json

import pytest

from bc.bench import BenchConfig, main
from bc.errors import ConfigError
from bc.nets.classic import ClassicBackbone


def test_bench_reports_speed_ceiling_ratio_and_latency(tmp_path) -> None:
    out = tmp_path / "bench.json"
    config = BenchConfig(
        nets=["tiny_nfc", "tiny_lstm"],
        size=32,
        batch_size=4,
        steps=2,
        rounds=1,
        latency_steps=3,
        runs=3,
        run_frames=30,
        json=str(out),
        threads=1,
    )
    results = main(config)
    assert [r["net"] for r in results] == ["tiny_nfc", "tiny_lstm"]
    assert [r["frames"] for r in results] == [3, 1]
    for row in results:
        assert row["samples_per_s"] > 0 and row["ceiling_samples_per_s"] > 0
        assert row["ratio"] == pytest.approx(row["samples_per_s"] / row["ceiling_samples_per_s"])
        assert 0 < row["latency_ms"] <= row["latency_p90_ms"] + 1e-9
    assert json.loads(out.read_text()) == results
    assert [r["input_size"] for r in results] == [None, None]


def test_bench_trains_a_classic_net_at_the_input_size_asked(monkeypatch) -> None:
    sizes = []
    original = ClassicBackbone.forward

    def spy(self, x):
        out = original(self, x)
        sizes.append(self.input_size)
        return out

    monkeypatch.setattr(ClassicBackbone, "forward", spy)
    config = BenchConfig(nets=["squeeze11", "tiny_nfc"], input_size=40, size=32, batch_size=2,
                         steps=1, rounds=1, latency_steps=1, runs=2, run_frames=12,
                         threads=1)  # fmt: skip
    results = main(config)
    assert [r["input_size"] for r in results] == [40, None], "only a classic net resizes"
    assert sizes and set(sizes) == {40}


def test_bench_rejects_unknown_nets_and_tiny_input_sizes() -> None:
    with pytest.raises(ConfigError, match="unknown --nets"):
        BenchConfig(nets=["nope"])
    with pytest.raises(ConfigError, match="input_size|input-size"):
        BenchConfig(input_size=16)
