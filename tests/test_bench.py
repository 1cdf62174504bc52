"""The benchmark's arithmetic and table (bench/stats.py): no lab, no timing."""

import pytest

from bench.stats import Row, markdown_table, median, number, percentile


def test_median_of_odd_and_even_counts() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        median([])


def test_percentile_is_nearest_rank() -> None:
    values = [float(k) for k in range(1, 101)]  # 1..100
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.5) == 50.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([1.0, 2.0, 3.0], 0.95) == 3.0


def test_table_shows_median_spread_p95_and_goal() -> None:
    rows = [
        Row("no-change re-deploy, 1 host", [0.9, 0.7, 0.8], "s", goal="< 0.90 s", met=True),
        Row("mail latency", [0.1] * 19 + [2.0], "s", goal="median < 1 s", met=False, p95=True),
        Row("remote commands", [1, 1], "commands"),
    ]
    table = markdown_table(rows).splitlines()
    assert table[2] == "| no-change re-deploy, 1 host | 0.8 s | 0.7 .. 0.9 | 3 | < 0.90 s | yes |  |"
    assert table[3] == "| mail latency | 0.1 s | 0.1 .. 2.00 (p95 0.1) | 20 | median < 1 s | **no** |  |"
    assert table[4] == "| remote commands | 1 commands | 1 .. 1 | 2 |  |  |  |"
    assert rows[1].as_json()["p95"] == 0.1


def test_numbers_keep_meaningful_digits() -> None:
    assert number(0.02134, "s") == "0.0213"
    assert number(1.744, "s") == "1.74"
    assert number(96.44, "s") == "96.4"
    assert number(412.3, "MiB") == "412"
    assert number(12, "commands") == "12"
