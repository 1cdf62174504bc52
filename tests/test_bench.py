"""The benchmark's arithmetic, table and figure (bench/stats.py, bench/figure.py): no lab, no timing."""

from xml.etree import ElementTree

import pytest

from bench.figure import scaling_svg
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


def test_a_capped_row_shows_runs_stopped_at_the_cap_as_more_than_it() -> None:
    rows = [
        Row("all stopped", [90.0, 90.0, 90.0], "s", cap=90.0),
        Row("some stopped", [3.5, 90.0, 90.0], "s", cap=90.0),
        Row("none stopped", [0.61, 0.72, 0.85], "s", cap=90.0),
    ]
    table = markdown_table(rows).splitlines()
    assert table[2] == "| all stopped | > 90 s | > 90 .. > 90 | 3 |  |  |  |"
    assert table[3] == "| some stopped | > 90 s | 3.50 .. > 90 | 3 |  |  |  |"
    assert table[4] == "| none stopped | 0.72 s | 0.61 .. 0.85 | 3 |  |  |  |"
    assert rows[0].as_json()["cap"] == 90.0


def test_numbers_keep_meaningful_digits() -> None:
    assert number(0.02134, "s") == "0.0213"
    assert number(1.744, "s") == "1.74"
    assert number(96.44, "s") == "96.4"
    assert number(412.3, "MiB") == "412"
    assert number(12, "commands") == "12"


def test_scaling_figure_is_well_formed_svg_with_every_series() -> None:
    series = [
        ("no-change re-deploy", [(1, 0.62), (10, 1.1), (50, 2.9)]),
        ("parallel SSH floor", [(50, 2.3), (1, 0.17), (10, 0.45)]),
        ("Ansible peer <playbook>", [(1, 6.7)]),
    ]
    root = ElementTree.fromstring(scaling_svg(series, "No-change re-deploy & floor"))
    ns = {"svg": "http://www.w3.org/2000/svg"}
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    groups = root.findall("svg:g[@class='series']", ns)
    assert [g.get("data-name") for g in groups] == [name for name, _ in series]
    for group, (name, values) in zip(groups, series, strict=True):
        dots = group.findall("svg:circle", ns)
        assert len(dots) == len(values)
        assert [g.text for g in group.findall("svg:text", ns)] == [name]
        lines = group.findall("svg:polyline", ns)
        assert len(lines) == (1 if len(values) > 1 else 0)
        if lines:  # drawn left to right, and a larger time is higher up (a smaller y)
            xs = [float(point.split(",")[0]) for point in lines[0].get("points").split()]
            assert xs == sorted(xs)
    floor_dots = groups[1].findall("svg:circle", ns)
    assert float(floor_dots[0].get("cy")) > float(floor_dots[-1].get("cy"))
    with pytest.raises(ValueError):
        scaling_svg([("empty", [])], "nothing")


def test_scaling_figure_on_a_log_axis_spaces_tenfold_steps_evenly() -> None:
    series = [("a", [(1, 0.1), (10, 1.0), (50, 10.0)])]
    root = ElementTree.fromstring(scaling_svg(series, "log", log_y=True))
    dots = root.findall(".//{http://www.w3.org/2000/svg}circle")
    ys = [float(dot.get("cy")) for dot in dots]
    assert ys[0] > ys[1] > ys[2]
    assert abs((ys[0] - ys[1]) - (ys[1] - ys[2])) < 0.2  # 0.1 -> 1 as far as 1 -> 10
    with pytest.raises(ValueError):
        scaling_svg([("zero", [(1, 0.0)])], "log", log_y=True)
