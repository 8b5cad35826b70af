"""The speed benchmark's bookkeeping (benchmarks/speed.py): ratios from the least disturbed round of each row."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import speed  # noqa: E402  (benchmarks/speed.py; imports no TensorFlow)


def _row(name, backend, median, minimum=None, **extra):
    return {"name": name, "backend": backend, "median_ms": median, "min_ms": minimum or median, **extra}


def test_best_of_rounds_keeps_the_fastest_round_and_lists_all():
    results = [_row("net", "function", 500.0, round=1), _row("net", "pytorch", 240.0, round=1),
               _row("net", "function", 190.0, round=2), _row("net", "pytorch", 210.0, round=2),
               {"name": "net", "backend": "xla", "error": "boom"}]
    best = speed.best_of_rounds(results)
    assert set(best) == {("net", "function"), ("net", "pytorch")}  # the error line has no timing
    assert best[("net", "function")]["median_ms"] == 190.0
    assert best[("net", "function")]["round_medians_ms"] == [500.0, 190.0]
    assert best[("net", "pytorch")]["round_medians_ms"] == [240.0, 210.0]


def test_summary_ratio_uses_each_rows_best_round():
    # Round 1 of "function" was hit by interference (500 ms): a single-round ratio would say 2.08x PyTorch.
    results = [_row("net", "function", 500.0, round=1), _row("net", "pytorch", 240.0, round=1),
               _row("net", "function", 190.0, round=2), _row("net", "pytorch", 210.0, round=2)]
    ratios = speed.summarize(results)
    assert ratios["net/function"]["over_pytorch_median"] == round(190.0 / 210.0, 3)


def test_one_round_summary_is_unchanged():
    results = [_row("net", "function", 100.0, 90.0, peak_rss_mb=800.0),
               _row("net", "pytorch", 200.0, 150.0, peak_rss_mb=400.0)]
    entry = speed.summarize(results)["net/function"]
    assert entry == {"over_pytorch_median": 0.5, "over_pytorch_min": 0.6, "memory_over_pytorch": 2.0}
    assert "round_medians_ms" not in results[0]  # the printed lines are not modified
