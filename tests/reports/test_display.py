"""Formatting helpers of the reports: p-values, column headers, labels, ordered bands, figure axes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import math
from pathlib import Path

import matplotlib.pyplot as plt
import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.reports import figures as fg
from sciatica_outcomes.reports import quarterly as q
from sciatica_outcomes.reports.display import ReportWriter, column_label, format_p


def test_p_values_are_never_zero() -> None:
    assert format_p(0.0) == "< 0.001"
    assert format_p(0.00049) == "< 0.001"
    assert format_p(0.001) == "0.001"
    assert format_p(0.0123) == "0.012"
    assert format_p(0.5) == "0.500"
    assert format_p(None) == "-" and format_p(math.nan) == "-"


def test_table_prints_words_for_column_names_and_formats_p(tmp_path: Path) -> None:
    w = ReportWriter(tmp_path)
    frame = pl.DataFrame({"term": ["week", "age"], "o_minus_e": [1.25, -0.5], "p": [0.0, 0.0432]})
    page = w.table(frame, "t", "A table", labels={"term": "model term"}).html
    assert "<th>model term</th><th>observed minus expected</th><th>p</th>" in page
    assert "<td>&lt; 0.001</td>" in page and "<td>0.043</td>" in page and "0.000" not in page
    # the CSV keeps the column names and the numbers
    csv = pl.read_csv(tmp_path / "tables" / "t.csv")
    assert csv.columns == ["term", "o_minus_e", "p"] and csv["p"].to_list() == [0.0, 0.0432]
    assert column_label("mean_weekly_tut_s") == "mean weekly time under tension (s)"
    assert column_label("some_new_column") == "some new column"


def test_latex_p_values(tmp_path: Path) -> None:
    w = ReportWriter(tmp_path)
    w.table(pl.DataFrame({"term": ["a"], "p": [1e-6]}), "lx", "P", latex=True)
    tex = (tmp_path / "tables" / "lx.tex").read_text(encoding="utf-8")
    assert "$<$ 0.001" in tex and "e-06" not in tex


def test_pain_bands_are_labelled_from_the_catalog_with_configured_ranges() -> None:
    assert q.pain_band_labels(ClinicalConfig()) == {
        "safe": "safe (0-2)",
        "acceptable": "acceptable (above 2 up to 5)",
        "high_risk": "high risk (above 5)",
    }
    custom = q.pain_band_labels(ClinicalConfig(pain_safe_max=3.0, pain_acceptable_max=4.0))
    assert (
        custom["acceptable"] == "acceptable (above 3 up to 4)"
        and custom["high_risk"] == "high risk (above 4)"
    )
    assert list(fg.PAIN_BAND_COLOURS) == list(q.PAIN_BANDS) == ["safe", "acceptable", "high_risk"]
    assert len(set(fg.PAIN_BAND_COLOURS.values())) == 3


def test_pain_bands_and_case_mix_come_in_their_order(report_store: dict[str, Path]) -> None:
    inputs = q.load_inputs(report_store["db"], "2026Q2")
    bands = q.safety_summary(inputs)["pain_bands"]["band"].to_list()
    assert len(bands) >= 2 and bands == [b for b in q.PAIN_BANDS if b in bands]
    mix = q.case_mix(inputs)
    for characteristic, order in q.CASE_MIX_ORDER.items():
        shown = mix.filter(pl.col("characteristic") == characteristic)["category"].to_list()
        assert shown == [c for c in (*order, "not recorded") if c in shown], characteristic
    sexes = set(mix.filter(pl.col("characteristic") == "sex")["category"])
    assert sexes <= {"female", "male", "other or not stated"} and "F" not in sexes
    ages = mix.filter(pl.col("characteristic") == "age band")["category"].to_list()
    assert ages == ["under 40", "40-59", "60 and over"]


def test_share_axes_start_at_zero() -> None:
    trend = pl.DataFrame({"quarter": ["2026Q1", "2026Q2", "2026Q3"], "adh": [68.0, None, 72.0]})
    _, ax = plt.subplots()
    fg.trend_plot(trend, ["adh"], ["adherence"], "%", ax=ax, share=True)
    assert ax.get_ylim() == (0.0, 100.0)
    _, ax = plt.subplots()
    fg.trend_plot(trend, ["adh"], ["adherence"], "count", ax=ax)
    assert ax.get_ylim()[0] == 0.0
    _, ax = plt.subplots()
    fg.bar_counts(["safe", "acceptable"], [80.0, 20.0], xlabel="%", ylabel="band", ax=ax, share=True)
    assert ax.get_xlim() == (0.0, 100.0)
    # the first category is drawn at the top (safe first)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["safe", "acceptable"] and ax.yaxis_inverted()
    plt.close("all")
