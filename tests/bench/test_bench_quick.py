"""`make bench` works: every part runs at toy sizes and yields its table and target verdicts.

The figures at these sizes mean little (and no test asserts a duration); the full benchmark is
`make bench`, and the README shows its latest tables.
"""

from __future__ import annotations

import pytest

from tests.bench.__main__ import PARTS, QUICK, measure


@pytest.mark.slow
def test_every_benchmark_part_runs_and_reports():
    tables, targets = measure(QUICK, list(PARTS))
    titles = [t.title for t in tables]
    assert titles[0] == "Requests per user"
    assert any(t.startswith("Posts: stage-and-merge") for t in titles)
    assert any(t.startswith("Snapshots: upsert") for t in titles)
    assert any(t.startswith("End to end") for t in titles)
    assert any(t.startswith("Rate budget") for t in titles)
    assert any(t.startswith("Memory") for t in titles)
    assert all(table.rows for table in tables)
    verdicts = [text for _, text in targets.lines]
    assert any("day-2 requests" in v for v in verdicts)
    assert any("budget used" in v for v in verdicts)
    assert any("peak RSS" in v for v in verdicts)
    for table in tables:
        assert table.markdown().count("\n") >= 3
