"""The growth chart of `etl report --png`: followers and daily engagement, gaps left visible.

matplotlib is an optional extra (`pip install .[charts]`); it is imported only when a chart is
drawn, so every other command, and `etl report` without --png, works without it.
"""

from __future__ import annotations

import logging
import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from etl.report import Report

# The PNG's size in pixels (figure inches times DPI; savefig keeps it: no tight bounding box).
WIDTH_PX, HEIGHT_PX, DPI = 1200, 700, 100
INSTALL_HINT = "--png needs matplotlib: install the charts extra (pip install 'dopplersky-workers[charts]')"


class ChartsUnavailable(RuntimeError):
    """matplotlib is not installed; the message says how to install it."""


def _matplotlib() -> Any:
    """The matplotlib module with the Agg backend (no display needed), or ChartsUnavailable."""
    try:
        import matplotlib
    except ImportError:
        raise ChartsUnavailable(INSTALL_HINT) from None
    matplotlib.use("Agg")
    # Its font cache notice is not the user's business; warnings still show.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    return matplotlib


def require_matplotlib() -> None:
    """Fail early, before any database work, when a chart cannot be drawn."""
    _matplotlib()


def _gap_spans(days: list[date], values: list[float]) -> list[tuple[date, date]]:
    """Runs of consecutive days without data, as (first, last) pairs."""
    spans: list[tuple[date, date]] = []
    for day, value in zip(days, values, strict=True):
        if not math.isnan(value):
            continue
        if spans and spans[-1][1] == day - timedelta(days=1):
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    return spans


def render_growth_chart(report: Report, path: str | Path) -> None:
    """Write a PNG of WIDTH_PX x HEIGHT_PX: followers above, engagement gained per day below."""
    growth_figure(report).savefig(path, format="png", dpi=DPI)


def growth_figure(report: Report) -> Any:
    """The chart as a matplotlib Figure (Agg canvas), not yet saved."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    days = [row["date"] for row in report.days]
    # NaN, not zero or an interpolation, for a day without a snapshot: lines break there.
    followers = [math.nan if row["followers"] is None else float(row["followers"]) for row in report.days]
    gained = [
        math.nan if row["engagement_change_1d"] is None else float(row["engagement_change_1d"]) for row in report.days
    ]

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    handle = report.account.handle
    fig.suptitle(f"@{handle}: followers and daily engagement, {report.first} to {report.last}")

    # Markers as well as a line: a day with data between two gaps has no segment to draw.
    top.plot(days, followers, color="tab:blue", marker="o", markersize=3, linewidth=1.5, label="followers")
    top.set_ylabel("followers")
    heights = [0.0 if math.isnan(v) else v for v in gained]
    # A loss (deleted posts, unlikes) in red, so it is not mistaken for a small gain.
    colors = ["tab:red" if v < 0 else "tab:green" for v in heights]
    bottom.bar(days, heights, width=0.8, color=colors)
    bottom.axhline(0, color="0.4", linewidth=0.8)
    bottom.set_ylabel("engagement gained per day")
    bottom.set_xlabel("likes + replies + quotes + reposts, change since the day before (UTC dates)")

    for ax in (top, bottom):
        ax.grid(True, axis="y", color="0.9")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        ax.set_xlim(report.first - timedelta(days=1), report.last + timedelta(days=1))
    # Shade the days without a snapshot, and the days whose change cannot be computed, so that
    # a missing bar never reads as zero engagement.
    for ax, values in ((top, followers), (bottom, gained)):
        for first, last in _gap_spans(days, values):
            # In day numbers: date arithmetic would drop the half days and draw nothing.
            ax.axvspan(date2num(first) - 0.5, date2num(last) + 0.5, color="0.85", linewidth=0)
    if any(math.isnan(v) for v in followers + gained):
        top.legend(
            handles=[top.lines[0], Patch(color="0.85", label="no snapshot (no change computed)")],
            loc="best",
        )
    locator = AutoDateLocator()
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    return fig
