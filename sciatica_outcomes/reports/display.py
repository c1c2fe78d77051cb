"""What report notebooks use to show a table or a figure: private, accessible and saved beside the report.

Every table passes through :func:`sciatica_outcomes.reports.privacy.suppress_counts` and is written to
``tables/<name>.csv`` with spreadsheet-safe cells; every figure is saved to ``figures/<name>.png`` and shown
inline with its alt text (and a phone rendering).

In the CSV files numbers are numbers (:func:`csv_numbers`): counts, percentages (as the number of percent)
and rates are written unquoted and without thousands separators. A column in which a cell is withheld is the
one exception: it is text, the withheld cell is ``*`` and the other cells are plain numbers, so that nothing
withheld can be mistaken for a number (a blank would read as "no value", a 0 as zero). The HTML tables show
column headers in words (:data:`COLUMN_LABELS`); the CSV files keep the column names.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import polars as pl

from sciatica_outcomes.reports.privacy import (
    NETWORK_RULE,
    SUPPRESSED,
    SuppressionRule,
    suppress_counts,
    write_safe_csv,
)

mpl.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.rcsetup import cycler

__all__ = [
    "COLUMN_LABELS",
    "PALETTE",
    "PHONE_DPI",
    "PHONE_MAX_WIDTH",
    "PHONE_WIDTH_IN",
    "HtmlBlock",
    "ReportWriter",
    "apply_style",
    "column_label",
    "csv_numbers",
    "format_p",
    "to_latex",
    "withhold_small_counts",
]

#: Width (inches) of a figure's phone rendering, its resolution, and the widest screen that shows it: at
#: 390 CSS px a 4-inch figure is drawn at about 1.2 px per point, so 8-10 pt text is 10-12 px tall.
PHONE_WIDTH_IN = 4.0
PHONE_DPI = 160
PHONE_MAX_WIDTH = "40rem"

#: Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008), in the order figures use it.
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
)


def apply_style() -> None:
    """Set matplotlib defaults for report figures (palette, sizes, readable fonts)."""
    plt.rcParams.update(
        {
            "axes.prop_cycle": cycler(color=list(PALETTE)),
            "figure.figsize": (7.0, 3.8),
            "figure.dpi": 110,
            "savefig.dpi": 110,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "font.size": 10,
            "legend.frameon": False,
        }
    )


@dataclass(frozen=True)
class HtmlBlock:
    """A piece of HTML that Jupyter displays as rich output (``_repr_html_``)."""

    html: str

    def _repr_html_(self) -> str:
        return self.html


def _is_count_key(key: str) -> bool:
    return key == "n" or key.startswith(("n_", "rows_", "dropped_"))


def withhold_small_counts(record: Any, rule: SuppressionRule = NETWORK_RULE) -> Any:
    """A JSON-ready record (a model specification, diagnostics) with every small count replaced by ``*``.

    Counts are the integer entries whose key is ``n``, or starts with ``n_``, ``rows_`` or ``dropped_``
    (``n_obs``, ``rows_used``, ``dropped_missing_case_mix``, ...), at any depth; the rest is copied.

    Parameters
    ----------
    record : object
        Nested dicts and lists of plain values.
    rule : SuppressionRule, default :data:`~sciatica_outcomes.reports.privacy.NETWORK_RULE`
        The audience's rule.

    Returns
    -------
    object
        The copy.
    """
    if isinstance(record, Mapping):
        return {
            k: SUPPRESSED
            if _is_count_key(str(k)) and isinstance(v, int) and not isinstance(v, bool) and rule.is_small(v)
            else withhold_small_counts(v, rule)
            for k, v in record.items()
        }
    if isinstance(record, list | tuple):
        return [withhold_small_counts(v, rule) for v in record]
    return record


#: Column headers in words for the columns the reports show (the CSV files keep the column names).
COLUMN_LABELS: dict[str, str] = {
    "n": "episodes",
    "ci_low": "95% CI from",
    "ci_high": "95% CI to",
    "q25": "lower quartile",
    "q75": "upper quartile",
    "o_minus_e": "observed minus expected",
    "band": "funnel band",
    "shrunken": "shrunken estimate",
    "shrunken_low": "shrunken 95% CI from",
    "shrunken_high": "shrunken 95% CI to",
    "unit": "unit",
    "n_with_end": "episodes with an end score",
    "responders_mcid": "reached the MCID",
    "responders_30pct": "improved by 30% or more",
    "at_cap_end": "end test stopped at the time cap",
    "mean_change": "mean change",
    "median_change": "median change",
    "n_events": "reached the MCID",
    "median_weeks": "median weeks",
    "program_week": "week of the program",
    "muscle_group": "muscle group",
    "episodes": "episodes",
    "mean_weekly_reps": "mean weekly repetitions",
    "mean_weekly_volume_kg": "mean weekly volume (kg)",
    "mean_weekly_tut_s": "mean weekly time under tension (s)",
    "weeks_meeting_prescription_pct": "patient-weeks meeting the prescription",
    "flare_rate_per_100": "flares per 100 sessions",
    "odi_responders_pct": "reached the ODI MCID",
    "baseline_recorded_pct": "recorded at baseline",
    "end_recorded_pct": "recorded at the end",
    "used_for": "used for",
    "se": "SE",
    "df": "df",
    "p": "p",
}


def column_label(name: str) -> str:
    """The header a report prints for a column: :data:`COLUMN_LABELS`, else the name with spaces."""
    return COLUMN_LABELS.get(name, name.replace("_", " "))


def format_p(p: float | None) -> str:
    """A p-value as a report prints it: ``< 0.001`` below 0.001, else three decimals; ``-`` when missing.

    Never ``0.000``: a p-value is not zero, only smaller than the precision shown.
    """
    if p is None or math.isnan(p):
        return "-"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}"


_NUMBER_TEXT = r"^-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?$"


def csv_numbers(frame: pl.DataFrame) -> pl.DataFrame:
    """Turn the display strings of a table's numbers back into numbers for its CSV file.

    A text column whose every value is a number as the report prints it (``1,659``, ``71%``, ``0.6``) or
    the withheld mark :data:`~sciatica_outcomes.reports.privacy.SUPPRESSED` is converted:

    - with no withheld cell, to an integer column (or a float column when a value has decimals), thousands
      separators and the percent sign dropped (a percentage is written as the number of percent, 71 for
      ``71%``);
    - with a withheld cell, it stays text so that the withheld cell can say ``*``, and every other cell is
      the plain number (``1659``, ``71``): a spreadsheet reads those cells as numbers and the ``*`` as text.

    Other columns (labels, and columns that are numbers already) are returned unchanged, so no value is
    lost: only the formatting of a number changes.

    Parameters
    ----------
    frame : polars.DataFrame
        A table as shown (counts as display strings after suppression).

    Returns
    -------
    polars.DataFrame
    """
    out = frame
    for c, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        values = frame[c].drop_nulls()
        if values.len() == 0:
            continue
        withheld = values == SUPPRESSED
        numeric = values.str.contains(_NUMBER_TEXT)
        if not bool((withheld | numeric).all()) or not bool(numeric.any()):
            continue
        plain = pl.col(c).str.replace_all(",", "").str.strip_suffix("%")
        if bool(withheld.any()):
            out = out.with_columns(plain.alias(c))
        else:
            decimals = bool(values.str.contains(r"\.").any())
            out = out.with_columns(plain.cast(pl.Float64 if decimals else pl.Int64).alias(c))
    return out


def _is_p_column(name: str) -> bool:
    return name in ("p", "p_value", "p_adjusted", "p.value", "Pr(>Chisq)", "Pr(>F)", "Pr(>|t|)")


def _fmt(value: Any, digits: int, column: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and _is_p_column(column):
        return html.escape(format_p(value))
    if isinstance(value, float):
        text = f"{value:,.{digits}f}"
        # a value that rounds to zero is 0.0, never -0.0 (a sign the number shown does not have)
        return text[1:] if text.startswith("-") and not text.strip("-0.,") else text
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return html.escape(str(value))


def _latex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("$", r"\$"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("^", r"\^{}"),
        ("~", r"\~{}"),
    ):
        text = text.replace(a, b)
    return text


def to_latex(frame: pl.DataFrame, path: str | Path, caption: str, label: str, digits: int = 3) -> Path:
    """Write a frame as a LaTeX ``table`` with ``booktabs`` rules (floats to ``digits`` places)."""

    def cell(v: Any, column: str) -> str:
        if v is None:
            return "--"
        if isinstance(v, float):
            if math.isnan(v):
                return "--"
            if _is_p_column(column):
                return "$<$ 0.001" if v < 0.001 else f"{v:.3f}"
            return (
                f"{v:.{digits}g}"
                if abs(v) < 1e-3 or abs(v) >= 1e5
                else f"{v:.{digits}f}".rstrip("0").rstrip(".")
            )
        return _latex_escape(str(v))

    cols = frame.columns
    align = "l" + "r" * (len(cols) - 1)
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        rf"\caption{{{_latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        " & ".join(_latex_escape(c) for c in cols) + r" \\",
        r"\midrule",
    ]
    lines += [
        " & ".join(cell(v, c) for c, v in zip(cols, row, strict=True)) + r" \\" for row in frame.iter_rows()
    ]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class ReportWriter:
    """Writes a report's tables and figures and returns their HTML.

    Parameters
    ----------
    out_dir : str or Path
        The report directory; ``tables/`` and ``figures/`` are created inside it.
    rule : SuppressionRule, default :data:`~sciatica_outcomes.reports.privacy.NETWORK_RULE`
        The audience's rule: every table is suppressed under it and the manifest records it.
    """

    def __init__(self, out_dir: str | Path, rule: SuppressionRule = NETWORK_RULE) -> None:
        self.out_dir = Path(out_dir)
        self.rule = rule
        self.tables_dir = self.out_dir / "tables"
        self.figures_dir = self.out_dir / "figures"
        self.tables_dir.mkdir(parents=True, exist_ok=True)
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        self.figures: list[dict[str, str]] = []
        self.tables: list[dict[str, str]] = []
        self.models: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        apply_style()

    def record_model(self, spec: Mapping[str, Any]) -> None:
        """Record a fitted model's specification (formula, method, convergence) for the provenance.

        Parameters
        ----------
        spec : mapping of str to object
            JSON-ready entries, such as a :class:`~sciatica_outcomes.reports.quarterly.ModelSpec`; copied,
            with every count the audience may not see withheld (:func:`withhold_small_counts`).
        """
        self.models.append(withhold_small_counts(dict(spec), self.rule))

    def finish(self, **extra: Any) -> Path:
        """Write ``report_manifest.json`` (tables, figures, models, extras) for the provenance.

        The extras go through :func:`withhold_small_counts` as the model specifications do.
        """
        self.extra.update(withhold_small_counts(extra, self.rule))
        path = self.out_dir / "report_manifest.json"
        manifest = {
            "tables": self.tables,
            "figures": self.figures,
            "models": self.models,
            "audience": self.rule.to_dict(),
            **self.extra,
        }
        path.write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
        return path

    def table(
        self,
        frame: pl.DataFrame,
        name: str,
        caption: str,
        *,
        count_cols: Sequence[str] = (),
        n_col: str | None = None,
        suppress_by: str | None = None,
        within: Mapping[str, str] | None = None,
        digits: int = 1,
        note: str | None = None,
        latex: bool = False,
        labels: Mapping[str, str] | None = None,
    ) -> HtmlBlock:
        """Suppress, save and render a table.

        Parameters
        ----------
        frame : polars.DataFrame
            The table, one row per category.
        name : str
            File stem of ``tables/<name>.csv``.
        caption : str
            Caption shown above the table.
        count_cols : sequence of str
            Count columns: suppressed together (primary + complementary, see ``suppress_table``).
        n_col : str, optional
            The column holding each row's number of patients; every statistic (floating-point column) of a
            row whose ``n_col`` is 1-10 (below the rule's ``min_group``) is withheld as well (a mean of three
            patients identifies them).
        suppress_by : str, optional
            A column whose groups are separate tables for suppression (e.g. the characteristic of a case-mix
            table, each with its own total).
        within : mapping of str to str, optional
            Nested count columns ``{part: whole}`` (see ``suppress_counts``): a part is withheld when it or
            ``whole - part`` is 1-10.
        digits : int
            Decimal places for floating-point columns.
        note : str, optional
            A footnote under the table.
        latex : bool
            Also write ``tables/<name>.tex`` (booktabs) of the table as shown, after suppression.
        labels : mapping of str to str, optional
            Column headers of the HTML table, over :func:`column_label` (the CSV keeps the column names).
        """
        nested = dict(within or {})
        cols = [c for c in count_cols if c not in nested]
        if n_col is not None and n_col not in cols and n_col not in nested:
            cols.append(n_col)
        if (cols or nested) and suppress_by is not None:
            shown = pl.concat(
                [
                    suppress_counts(part, cols, within=nested, rule=self.rule)
                    for _, part in frame.group_by(suppress_by, maintain_order=True)
                ]
            )
            frame = pl.concat([part for _, part in frame.group_by(suppress_by, maintain_order=True)])
        elif cols or nested:
            shown = suppress_counts(frame, cols, within=nested, rule=self.rule)
        else:
            shown = frame
        cols = cols + [c for c in nested if c not in cols]
        if n_col is not None:
            small = frame[n_col].fill_null(0).is_between(1, self.rule.min_group - 1)
        else:
            small = pl.Series([False] * frame.height)
        # statistics are floating-point columns; integer columns other than counts are labels (e.g. weeks)
        stat_cols = [c for c in frame.columns if c not in cols and frame.schema[c].is_float()]
        if stat_cols:
            shown = shown.with_columns(
                pl.when(small).then(None).otherwise(pl.col(c)).alias(c) for c in stat_cols
            )
        # in the CSV a missing value is an empty cell (a lone "-" would read as a formula to a spreadsheet)
        text_cols = [c for c, t in shown.schema.items() if t == pl.String]
        csv_frame = shown.with_columns(
            pl.when(pl.col(c) == "-").then(None).otherwise(pl.col(c)).alias(c) for c in text_cols
        )
        write_safe_csv(csv_numbers(csv_frame), self.tables_dir / f"{name}.csv")
        if latex:
            to_latex(shown, self.tables_dir / f"{name}.tex", caption, f"tab:{name}")
        self.tables.append({"name": name, "caption": caption, "file": f"tables/{name}.csv"})
        headers = {**{c: column_label(c) for c in shown.columns}, **dict(labels or {})}
        # words are read left-aligned, numbers right-aligned (counts are strings only after suppression)
        text = {c: frame.schema[c] == pl.String and c not in cols for c in shown.columns}
        cls = {c: ' class="text"' if text[c] else "" for c in shown.columns}
        head = "".join(f"<th{cls[c]}>{html.escape(headers[c])}</th>" for c in shown.columns)
        rows = (
            "".join(f"<td{cls[c]}>{_fmt(v, digits, c)}</td>" for c, v in zip(shown.columns, row, strict=True))
            for row in shown.iter_rows()
        )
        body = "".join(f"<tr>{r}</tr>" for r in rows)
        foot = f'<p class="note">{html.escape(note)}</p>' if note else ""
        band = f"{self.rule.low}-{self.rule.high}"
        suppressed_note = (
            f'<p class="note">{SUPPRESSED} = withheld to protect privacy (a count of {band}, or a value from '
            "which one could be worked out).</p>"
            if any(SUPPRESSED in str(v) for col in cols for v in shown[col].to_list())
            else ""
        )
        return HtmlBlock(
            f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>{suppressed_note}{foot}"
        )

    def figure(
        self,
        fig: Any,
        name: str,
        alt: str,
        caption: str,
        *,
        phone: Any = None,
        phone_size: tuple[float, float] | None = None,
    ) -> HtmlBlock:
        """Save a matplotlib figure to ``figures/<name>.png`` and return it inline with alt text.

        The page carries two renderings: the figure as drawn (screens and print) and a phone rendering that a
        ``<picture>`` element shows on screens up to :data:`PHONE_MAX_WIDTH` wide. The phone rendering is
        the same figure redrawn :data:`PHONE_WIDTH_IN` inches wide (text keeps its point size, so at 390 px
        a 10 pt label is about 12 px instead of 6 px), or ``phone``, a figure laid out for a narrow screen.

        Parameters
        ----------
        fig : matplotlib.figure.Figure
            The figure (closed after saving).
        name : str
            File stem.
        alt : str
            Text alternative describing what the figure shows (read by screen readers).
        caption : str
            Visible caption.
        phone : matplotlib.figure.Figure, optional
            A separate narrow layout for phones (closed after saving); default: ``fig`` resized.
        phone_size : tuple of float, optional
            Width and height (inches) of the resized phone rendering; default
            ``(PHONE_WIDTH_IN, height scaled by 0.85 and at least 3)``.
        """
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        data = buf.getvalue()
        small = phone if phone is not None else fig
        if phone is None:
            _, height = fig.get_size_inches()
            size = phone_size or (PHONE_WIDTH_IN, max(3.0, 0.85 * float(height)))
            small.set_size_inches(*size)
            with contextlib.suppress(ValueError, RuntimeError):
                small.tight_layout()
        phone_buf = io.BytesIO()
        small.savefig(phone_buf, format="png", bbox_inches="tight", dpi=PHONE_DPI)
        plt.close(fig)
        if phone is not None:
            plt.close(phone)
        (self.figures_dir / f"{name}.png").write_bytes(data)
        self.figures.append({"name": name, "alt": alt, "caption": caption, "file": f"figures/{name}.png"})
        encoded = base64.b64encode(data).decode("ascii")
        narrow = base64.b64encode(phone_buf.getvalue()).decode("ascii")
        return HtmlBlock(
            f'<figure><picture><source media="(max-width: {PHONE_MAX_WIDTH})" '
            f'srcset="data:image/png;base64,{narrow}">'
            f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}"></picture>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def alert(self, title: str, body_html: str) -> HtmlBlock:
        """A boxed alert that cannot be missed (used for unactioned red flags)."""
        return HtmlBlock(f'<div class="alert" role="alert"><h3>{html.escape(title)}</h3>{body_html}</div>')

    def population(self, text: str) -> HtmlBlock:
        """The population a section describes, printed under its heading ("Population: ...")."""
        return HtmlBlock(f'<p class="population"><b>Population:</b> {html.escape(text)}</p>')

    def dates(self, text: str) -> HtmlBlock:
        """The front page's line with the date of the data and of the report."""
        return HtmlBlock(f'<p class="dates">{html.escape(text)}</p>')

    def summary(self, sentences: Sequence[str]) -> HtmlBlock:
        """The front page's summary sentences as a list (plain text, escaped)."""
        items = "".join(f"<li>{html.escape(s)}</li>" for s in sentences)
        return HtmlBlock(f'<ul class="summary">{items}</ul>')

    def headline(self, figures: Sequence[tuple[str, str]]) -> HtmlBlock:
        """A grid of headline figures: (label, already-safe value) pairs."""
        cells = "".join(f"<div><b>{html.escape(v)}</b>{html.escape(k)}</div>" for k, v in figures)
        return HtmlBlock(f'<div class="headline">{cells}</div>')
