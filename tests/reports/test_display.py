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
    assert '<th class="text">model term</th><th>observed minus expected</th><th>p</th>' in page
    assert "<td>&lt; 0.001</td>" in page and "<td>0.043</td>" in page and "0.000" not in page
    # the CSV keeps the column names and the numbers
    csv = pl.read_csv(tmp_path / "tables" / "t.csv")
    assert csv.columns == ["term", "o_minus_e", "p"] and csv["p"].to_list() == [0.0, 0.0432]
    assert column_label("mean_weekly_tut_s") == "mean weekly time under tension (s)"
    assert column_label("some_new_column") == "some new column"


def test_a_value_that_rounds_to_zero_shows_no_sign(tmp_path: Path) -> None:
    # the demo's shrunken estimate of CL03 read "-0.0"
    frame = pl.DataFrame({"unit": ["A", "B", "C"], "shrunken": [-0.04, -0.06, -1234.5]})
    page = ReportWriter(tmp_path).table(frame, "t", "A table", digits=1).html
    assert "<td>0.0</td>" in page and "-0.0" not in page
    assert "<td>-0.1</td>" in page and "<td>-1,234.5</td>" in page


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
    assert sexes <= {"Female", "Male", "Other or not stated"} and "F" not in sexes
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


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_figures_carry_a_phone_rendering_with_text_at_a_legible_size(tmp_path: Path) -> None:
    import base64  # noqa: PLC0415
    import re  # noqa: PLC0415

    from sciatica_outcomes.reports.display import PHONE_DPI, PHONE_WIDTH_IN  # noqa: PLC0415

    w = ReportWriter(tmp_path)
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("weeks since start of program")
    page = w.figure(fig, "f", alt="A line from 0 to 1 over the weeks", caption="A line").html
    m = re.search(
        r'<picture><source media="\(max-width: 40rem\)" srcset="data:image/png;base64,([^"]+)">'
        r'<img src="data:image/png;base64,([^"]+)" alt="A line from 0 to 1 over the weeks"></picture>',
        page,
    )
    assert m is not None
    phone, wide = (base64.b64decode(g) for g in m.groups())
    assert wide == (tmp_path / "figures" / "f.png").read_bytes()
    assert [p.name for p in (tmp_path / "figures").iterdir()] == ["f.png"]  # the phone copy is inline only
    width_px, _ = _png_size(phone)
    # about PHONE_WIDTH_IN inches (tight bounding box): shown 370 px wide, 1 pt of text is >= 1.1 px
    inches = width_px / PHONE_DPI
    assert 0.85 * PHONE_WIDTH_IN <= inches <= 1.1 * PHONE_WIDTH_IN
    assert 370 / (inches * 72) >= 1.1
    # the wide rendering is the figure as drawn (7 in at the style's 110 dpi)
    assert _png_size(wide)[0] > 600


def test_compact_flow_diagram_keeps_its_text_inside_the_axes() -> None:
    stages = {
        "active at start of quarter": "172",
        "enrolled in quarter": "147",
        "active in quarter": "319",
        "ended: completed": "103",
        "ended: dropped out": "*",
        "still active at end of quarter": "170",
    }
    fig, ax = plt.subplots(figsize=(4.0, 6.4))
    fg.flow_diagram(stages, ax=ax, compact=True)
    fig.canvas.draw()
    frame = ax.get_window_extent()
    texts = [t for t in ax.texts if t.get_text()]
    assert any("n = 319" in t.get_text() for t in texts)
    for t in texts:
        box = t.get_window_extent()
        assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1, t.get_text()
    plt.close(fig)


def test_print_css_numbers_pages_and_keeps_headings_with_their_text() -> None:
    from sciatica_outcomes.reports.html import REPORT_CSS  # noqa: PLC0415

    assert 'content: "Page " counter(page) " of " counter(pages)' in REPORT_CSS
    assert "h1, h2, h3 { break-after: avoid-page" in REPORT_CSS
    assert "h2#Data-coverage { break-before: page; }" in REPORT_CSS  # the front page stands alone
    # a grid container with break-inside: avoid is pushed whole to the next page by Chromium: cards only
    assert ".headline div, ul.summary li" in REPORT_CSS and ".headline," not in REPORT_CSS


def test_csv_numbers_are_numbers_and_only_withheld_cells_are_text(tmp_path: Path) -> None:
    from sciatica_outcomes.reports.display import csv_numbers  # noqa: PLC0415

    shown = pl.DataFrame(
        {
            "quarter": ["2026Q2", "2026Q3"],
            "active": ["1,328", "319"],
            "ended": ["*", "149"],
            "share": ["71%", "73%"],
            "rate": ["0.6", "0.7"],
            "band": ["0-3", "4-6"],
        }
    )
    out = csv_numbers(shown)
    assert out.schema["active"] == pl.Int64 and out["active"].to_list() == [1328, 319]
    assert out.schema["share"] == pl.Int64 and out["share"].to_list() == [71, 73]
    assert out.schema["rate"] == pl.Float64
    assert out["ended"].to_list() == ["*", "149"]  # text only because a cell is withheld
    assert out["quarter"].to_list() == ["2026Q2", "2026Q3"] and out["band"].to_list() == ["0-3", "4-6"]
    # through the writer: the file has unquoted numbers and a quoted "*"
    w = ReportWriter(tmp_path)
    frame = pl.DataFrame({"category": ["a", "b", "c"], "n": [120, 4, 300]})
    w.table(frame, "counts", "Counts", count_cols=["n"])
    w.table(pl.DataFrame({"category": ["a", "b"], "n": [120, 300]}), "clean", "Counts", count_cols=["n"])
    assert (tmp_path / "tables" / "clean.csv").read_text().splitlines() == [
        '"category","n"',
        '"a",120',
        '"b",300',
    ]
    back = pl.read_csv(tmp_path / "tables" / "clean.csv")
    assert back.schema["n"] == pl.Int64
    withheld = pl.read_csv(tmp_path / "tables" / "counts.csv", infer_schema=False)
    # 4 is withheld, and 120 with it (else 4 = total - shown); 300 is written as the plain number
    assert withheld["n"].to_list() == ["*", "*", "300"]
    assert (tmp_path / "tables" / "counts.csv").read_text().splitlines()[1:] == [
        '"a","*"',
        '"b","*"',
        '"c","300"',
    ]
