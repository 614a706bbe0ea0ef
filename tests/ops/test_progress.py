"""The run's progress: one live line on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import io
import logging

from etl.cli.progress import RunDisplay


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def feed(display: RunDisplay, clock: Clock) -> None:
    display.progress(("plan", None, {0: 600, 1: 400}))
    clock.now += 10
    display.progress(("progress", 0, {"selected": 250, "written": 249, "failed": 1, "requests": 120, "rate_limited": 0}))
    clock.now += 10
    display.progress(("progress", 1, {"selected": 400, "written": 400, "failed": 0, "requests": 80, "rate_limited": 3, "done": True}))


def test_terminal_shows_one_live_line_with_totals_rate_eta_and_failures():
    clock, stream = Clock(), io.StringIO()
    display = RunDisplay(stream=stream, live=True, clock=clock)
    feed(display, clock)
    display.close()
    frames = stream.getvalue().split("\r\x1b[K")
    assert frames[-1] == (
        "650/1,000 users (65%), 32.5 users/s, 10.0 requests/s, ETA 10s, 1 failed, 3 rate-limited, 1/2 shards done\n"
    )
    assert "\n" not in "".join(frames[:-1])  # redrawn in place, never scrolled


def test_off_a_terminal_a_log_line_every_interval(caplog):
    clock, stream = Clock(), io.StringIO()
    display = RunDisplay(stream=stream, live=False, every=15, clock=clock)
    with caplog.at_level(logging.INFO, logger="etl.progress"):
        feed(display, clock)
        display.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["progress: 650/1,000 users (65%), 32.5 users/s, 10.0 requests/s, ETA 10s, 1 failed, 3 rate-limited, 1/2 shards done"]
    assert stream.getvalue() == ""


def test_quiet_shows_nothing_until_the_summary(caplog):
    clock, stream = Clock(), io.StringIO()
    display = RunDisplay(stream=stream, live=True, quiet=True, clock=clock)
    with caplog.at_level(logging.INFO, logger="etl.progress"):
        feed(display, clock)
        display.close()
    assert stream.getvalue() == "" and caplog.records == []
