"""The Prometheus textfile: values and labels parsed back, atomic replacement, success carried over."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import prometheus_client.exposition
import pytest
from prometheus_client.parser import text_string_to_metric_families

from etl.appview.results import Counters
from etl.metrics import write_metrics
from etl.run import RunOptions, RunReport, ShardReport

NOW = 1_796_000_000.0
RUN_AT = datetime(2026, 12, 3, 2, 0, 5, tzinfo=UTC)


def shard_stats(selected: int, written: int, failed: int, **extra) -> dict:
    """A shard's stats as etl.run builds them from a worker's ShardStats."""
    stats = {
        "shard": 0,
        "users_selected": selected,
        "users_written": written,
        "users_failed": failed,
        "users_inactive": 1,
        "feed_skipped": written // 2,
        "posts_merged": 10 * written,
        "posts_deleted": 1,
        "modes": {"feed": written - written // 2, "skip": written // 2},
        "failures": {"timeout": failed} if failed else {},
        "duration": 12.5,
        "host": "node-a",
        "pid": 4242,
        "requests": 30 + selected,
        "rate_limited": 2,
    }
    stats.update(extra)
    return stats


def make_report(*, failed_shard: bool = False, interrupted: bool = False) -> RunReport:
    """A finished run of shards 0-3 of 8 on this machine: 3 ran, 1 was already completed."""
    report = RunReport(run_date=RUN_AT.date(), run_at=RUN_AT, shards_here=[0, 1, 2, 3], run_id=17, status="in_progress")
    report.registered_users = 500
    report.workers = 2
    report.duration = 61.25
    report.skipped_completed = [3]
    report.shard_reports[0] = ShardReport(0, "completed", shard_stats(40, 39, 0, retries=4))
    report.shard_reports[1] = ShardReport(1, "partial" if failed_shard else "completed", shard_stats(50, 45, 4))
    if failed_shard:
        report.shard_reports[2] = ShardReport(2, "failed", error="worker process ended by SIGKILL")
    else:
        report.shard_reports[2] = ShardReport(2, "completed", shard_stats(10, 9, 0))
    report.interrupted = interrupted
    report.api = Counters(
        requests={"app.bsky.actor.getProfiles": 5, "app.bsky.feed.getAuthorFeed": 80, "app.bsky.feed.getPosts": 12},
        retries=7,
        rate_limited=3,
        bytes_received=123456,
        errors={"timeout": 4, "http_503": 3},
        throttle_seconds=8.5,
    )
    return report


OPTIONS = RunOptions(shards=8, shard_index="0-3", active_days=7)


def parse(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a textfile as {(name, sorted labels): value}."""
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[("dopplersky_etl_" + name, tuple(sorted(labels.items())))]


@pytest.fixture
def prom(tmp_path: Path) -> Path:
    return tmp_path / "dopplersky_etl.prom"


def test_run_wide_totals_and_api_counts_parse_back(prom):
    assert write_metrics(prom, make_report(), run_options=OPTIONS, now=NOW) is True
    s = parse(prom)
    assert value(s, "users_selected") == 100
    assert value(s, "users_written") == 93
    assert value(s, "users_failed") == 4
    assert value(s, "users_inactive") == 3
    assert value(s, "users_feed_skipped") == 19 + 22 + 4
    assert value(s, "posts_merged") == 930
    assert value(s, "api_requests", method="app.bsky.feed.getAuthorFeed") == 80
    assert value(s, "api_requests", method="app.bsky.actor.getProfiles") == 5
    assert value(s, "api_requests", method="app.bsky.feed.getPosts") == 12
    assert value(s, "api_retries") == 7
    assert value(s, "api_rate_limited") == 3
    assert value(s, "api_errors", kind="http_503") == 3
    assert value(s, "api_throttle_seconds") == 8.5
    assert value(s, "users_failed_by_reason", reason="timeout") == 4
    assert value(s, "users_by_mode", mode="skip") == 19 + 22 + 4
    assert value(s, "run_duration_seconds") == 61.25
    assert value(s, "registered_users") == 500
    assert value(s, "shards_here") == 4
    assert value(s, "run_started_timestamp_seconds") == RUN_AT.timestamp()


def test_per_shard_series_carry_a_shard_label(prom):
    write_metrics(prom, make_report(), run_options=OPTIONS, now=NOW)
    s = parse(prom)
    assert value(s, "shard_users_selected", shard="1") == 50
    assert value(s, "shard_users_written", shard="1") == 45
    assert value(s, "shard_users_failed", shard="1") == 4
    assert value(s, "shard_users_inactive", shard="0") == 1
    assert value(s, "shard_users_feed_skipped", shard="0") == 19
    assert value(s, "shard_api_requests", shard="2") == 40
    assert value(s, "shard_api_rate_limited", shard="2") == 2
    assert value(s, "shard_duration_seconds", shard="0") == 12.5
    assert value(s, "shard_api_retries", shard="0") == 4
    # Shard 1's stats carry no retries: no sample rather than a made-up zero.
    assert ("dopplersky_etl_shard_api_retries", (("shard", "1"),)) not in s
    # The already completed shard has a status but no counts.
    assert value(s, "shard_status", shard="3", status="already_completed") == 1
    assert ("dopplersky_etl_shard_users_written", (("shard", "3"),)) not in s


def test_run_status_is_a_set_of_gauges_with_exactly_one_set(prom):
    write_metrics(prom, make_report(), run_options=OPTIONS, now=NOW)
    s = parse(prom)
    states = {labels[0][1]: v for (name, labels), v in s.items() if name == "dopplersky_etl_run_status"}
    assert states == {"completed": 1, "failed": 0, "interrupted": 0, "no_users": 0}
    assert value(s, "run_exit_code") == 0
    info = next(labels for (name, labels), _ in s.items() if name == "dopplersky_etl_run_info")
    assert dict(info) == {
        "run_id": "17",
        "run_date": "2026-12-03",
        "shard_count": "8",
        "selection": "active:7",
        "run_status": "in_progress",
    }
    for shard in ("0", "1", "2"):
        assert value(s, "shard_status", shard=shard, status="completed") == 1
        assert value(s, "shard_status", shard=shard, status="failed") == 0


def test_success_sets_both_timestamps(prom):
    write_metrics(prom, make_report(), run_options=OPTIONS, now=NOW)
    s = parse(prom)
    assert value(s, "last_run_timestamp_seconds") == NOW
    assert value(s, "last_success_timestamp_seconds") == NOW


def test_a_failed_run_keeps_the_previous_success_time(prom):
    write_metrics(prom, make_report(), run_options=OPTIONS, now=NOW)
    write_metrics(prom, make_report(failed_shard=True), run_options=OPTIONS, now=NOW + 86400)
    s = parse(prom)
    assert value(s, "last_run_timestamp_seconds") == NOW + 86400
    assert value(s, "last_success_timestamp_seconds") == NOW
    assert value(s, "run_status", status="failed") == 1
    assert value(s, "run_exit_code") == 1
    assert value(s, "shard_status", shard="1", status="partial") == 1
    assert value(s, "shard_status", shard="2", status="failed") == 1
    # The dead shard reported nothing: its counts are absent, the totals count the others.
    assert ("dopplersky_etl_shard_users_selected", (("shard", "2"),)) not in s
    assert value(s, "users_selected") == 90


def test_a_failed_first_run_records_no_success_as_zero(prom):
    write_metrics(prom, make_report(interrupted=True), now=NOW)
    s = parse(prom)
    assert value(s, "last_success_timestamp_seconds") == 0
    assert value(s, "run_status", status="interrupted") == 1
    assert value(s, "run_exit_code") == 130


def test_a_damaged_previous_file_is_replaced(prom):
    prom.write_text("this is { not prometheus\n")
    write_metrics(prom, make_report(failed_shard=True), now=NOW)
    assert value(parse(prom), "last_success_timestamp_seconds") == 0


def test_run_without_users_is_no_users_and_a_success(prom):
    report = RunReport(run_date=RUN_AT.date(), run_at=RUN_AT, shards_here=[0], registered_users=0)
    write_metrics(prom, report, now=NOW)
    s = parse(prom)
    assert value(s, "run_status", status="no_users") == 1
    assert value(s, "last_success_timestamp_seconds") == NOW
    assert value(s, "users_selected") == 0


def test_dry_run_writes_nothing(prom):
    prom.write_text("# previous run\n")
    dry = RunOptions(shards=8, dry_run=True)
    assert write_metrics(prom, make_report(), run_options=dry, now=NOW) is False
    assert prom.read_text() == "# previous run\n"


def test_file_name_must_end_in_prom(tmp_path):
    with pytest.raises(ValueError, match=r"textfile collector reads only files ending in \.prom"):
        write_metrics(tmp_path / "metrics.txt", make_report(), now=NOW)


def test_write_replaces_the_file_by_rename_never_in_place(prom, monkeypatch):
    write_metrics(prom, make_report(), now=NOW)
    old = prom.read_text()
    renames = []
    real_rename = os.rename

    def spy(src, dst):
        # At the moment of the rename the reader still sees the whole old file, and the
        # temporary file already holds the whole new one.
        renames.append((Path(src), Path(dst), Path(src).read_text(), Path(dst).read_text()))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", spy)
    write_metrics(prom, make_report(failed_shard=True), now=NOW + 60)
    [(src, dst, new_text, seen_before)] = renames
    assert dst == prom and src != prom and src.parent == prom.parent
    assert not src.name.endswith(".prom")  # the collector never reads the temporary file
    assert seen_before == old
    assert new_text == prom.read_text() and new_text.endswith("\n")
    assert sorted(p.name for p in prom.parent.iterdir()) == [prom.name]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(prom, monkeypatch):
    write_metrics(prom, make_report(), now=NOW)
    old = prom.read_text()

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prometheus_client.exposition, "generate_latest", broken)
    with pytest.raises(OSError, match="No space left"):
        write_metrics(prom, make_report(failed_shard=True), now=NOW + 60)
    assert prom.read_text() == old
    assert sorted(p.name for p in prom.parent.iterdir()) == [prom.name]


def test_missing_directory_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_metrics(tmp_path / "nope" / "etl.prom", make_report(), now=NOW)


def test_run_date_label_is_the_report_date(prom):
    report = make_report()
    report.run_date = date(2026, 12, 3)
    write_metrics(prom, report, now=NOW)
    info = next(dict(labels) for (name, labels), _ in parse(prom).items() if name == "dopplersky_etl_run_info")
    assert info["run_date"] == "2026-12-03" and info["shard_count"] == "" and info["selection"] == ""
