"""`etl report`: the daily series with its gaps, the changes, the three formats and the chart."""

from __future__ import annotations

import csv
import io
import json
import struct
import sys
from datetime import date, timedelta

import psycopg
import pytest

from etl import charts
from tests.ops.conftest import ALICE_DID, ALICE_HANDLE, ALICE_NAME, LAST_DAY, MISSING_DAYS, snapshot_values

SNAPSHOT_COLUMNS = ("followers", "following", "posts", "likes", "replies", "quotes", "reposts")
CHANGED = ("followers", "engagement", "likes", "replies", "quotes", "reposts")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def stored(conn: psycopg.Connection, did: str) -> dict[date, dict[str, int]]:
    """The user's snapshot rows as the database holds them, by date."""
    rows = conn.execute(
        "SELECT date, followers, following, posts, likes, replies, quotes, reposts FROM snapshots WHERE did = %s",
        (did,),
    ).fetchall()
    return {row[0]: dict(zip(SNAPSHOT_COLUMNS, row[1:], strict=True)) for row in rows}


def expected_day(snapshots: dict[date, dict[str, int]], day: date) -> dict[str, int | None]:
    """What one row of the report must say, computed independently of the SQL."""

    def value(when: date, column: str) -> int | None:
        snap = snapshots.get(when)
        if snap is None:
            return None
        if column == "engagement":
            return snap["likes"] + snap["replies"] + snap["quotes"] + snap["reposts"]
        return snap[column]

    row: dict[str, int | None] = {c: value(day, c) for c in (*SNAPSHOT_COLUMNS, "engagement")}
    for column in CHANGED:
        for n in (1, 7, 30):
            now, then = value(day, column), value(day - timedelta(days=n), column)
            row[f"{column}_change_{n}d"] = None if now is None or then is None else now - then
    return row


def parse_csv(text: str) -> list[dict[str, int | None | date]]:
    """CSV rows with ISO dates and integers back as Python values, empty cells as None."""
    rows = list(csv.DictReader(io.StringIO(text)))
    return [
        {k: (date.fromisoformat(v) if k == "date" else (None if v == "" else int(v))) for k, v in row.items()}
        for row in rows
    ]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which the PNG format puts first."""
    assert data[:8] == PNG_MAGIC
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


# --- the series ----------------------------------------------------------------------------------


def test_csv_has_one_row_per_calendar_day_equal_to_the_database(alice, etl_cli, postgresql):
    result = etl_cli("report", ALICE_HANDLE, "--days", "45", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = parse_csv(result.stdout)
    assert [r["date"] for r in rows] == [LAST_DAY - timedelta(days=n) for n in range(44, -1, -1)]
    snapshots = stored(postgresql, ALICE_DID)
    for row in rows:
        assert row == {"date": row["date"], **expected_day(snapshots, row["date"])}, row["date"]
    gaps = [r["date"] for r in rows if r["followers"] is None]
    assert gaps == sorted(d for d in MISSING_DAYS if d >= rows[0]["date"])


def test_csv_header_names_every_column_and_gaps_are_empty_cells(alice, etl_cli):
    result = etl_cli("report", ALICE_HANDLE, "--days", "3", "--until", "2026-02-11", "--format", "csv")
    lines = result.stdout.splitlines()
    assert lines[0].split(",")[:10] == [
        "date", "followers", "following", "posts", "likes", "replies", "quotes", "reposts", "engagement",
        "followers_change_1d",
    ]  # fmt: skip
    assert len(lines[0].split(",")) == 9 + 6 * 3
    assert lines[2] == "2026-02-10" + "," * (9 + 6 * 3 - 1)
    assert lines[3] == "2026-02-11" + "," * (9 + 6 * 3 - 1)


def test_json_round_trip_equals_the_database_with_null_for_gaps(alice, etl_cli, postgresql):
    result = etl_cli("report", ALICE_DID, "--days", "40", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["did", "handle", "displayName", "days"]
    assert (data["did"], data["handle"], data["displayName"]) == (ALICE_DID, ALICE_HANDLE, ALICE_NAME)
    snapshots = stored(postgresql, ALICE_DID)
    assert len(data["days"]) == 40
    for day in data["days"]:
        when = date.fromisoformat(day["date"])
        assert day == {"date": day["date"], **expected_day(snapshots, when)}
    assert {date.fromisoformat(d["date"]) for d in data["days"] if d["followers"] is None} == {
        d for d in MISSING_DAYS if d > LAST_DAY - timedelta(days=40)
    }


def test_changes_are_empty_when_either_end_is_a_gap_and_exact_otherwise(alice, etl_cli):
    data = json.loads(etl_cli("report", ALICE_HANDLE, "--format", "json").stdout)
    by_day = {d["date"]: d for d in data["days"]}
    # The day after a lone gap: no 1-day change, but 7 and 30 days back have data.
    after_gap = by_day["2026-02-04"]
    assert after_gap["followers_change_1d"] is None and after_gap["engagement_change_1d"] is None
    assert after_gap["followers_change_7d"] is not None and after_gap["followers_change_30d"] is not None
    # 30 days before 2026-02-09 is the missing 2026-01-10: never compared with an older day.
    assert by_day["2026-02-09"]["followers_change_30d"] is None
    assert by_day["2026-02-09"]["followers_change_1d"] == by_day["2026-02-09"]["followers"] - by_day["2026-02-08"]["followers"]
    # A dip shows as a negative change.
    assert by_day["2026-02-05"]["followers_change_1d"] < 0
    # The period's first day looks back before the period (1 day), not before the history (30).
    first = data["days"][0]
    assert first["date"] == "2026-01-17"
    assert first["followers_change_1d"] == first["followers"] - snapshot_values(date(2026, 1, 16))["followers"]
    assert first["followers_change_30d"] is None


def test_first_rows_look_back_beyond_the_period_for_their_changes(alice, etl_cli):
    rows = parse_csv(etl_cli("report", ALICE_HANDLE, "--days", "1", "--format", "csv").stdout)
    assert len(rows) == 1 and rows[0]["date"] == LAST_DAY
    assert None not in (rows[0]["followers_change_1d"], rows[0]["followers_change_7d"], rows[0]["followers_change_30d"])


def test_until_before_any_snapshot_gives_only_gaps(alice, etl_cli):
    rows = parse_csv(etl_cli("report", ALICE_HANDLE, "--days", "3", "--until", "2025-12-01", "--format", "csv").stdout)
    assert [r["date"] for r in rows] == [date(2025, 11, 29), date(2025, 11, 30), date(2025, 12, 1)]
    assert all(v is None for r in rows for k, v in r.items() if k != "date")


def test_another_users_snapshots_never_appear(alice, etl_cli):
    rows = parse_csv(etl_cli("report", ALICE_HANDLE, "--days", "6", "--format", "csv").stdout)
    assert next(r for r in rows if r["date"] == date(2026, 2, 10))["followers"] is None


# --- the table ------------------------------------------------------------------------------------


def test_table_has_a_title_aligned_columns_and_blank_gap_rows(alice, etl_cli):
    result = etl_cli("report", ALICE_HANDLE, "--days", "5", "--until", "2026-02-12")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"@{ALICE_HANDLE}  {ALICE_DID}  {ALICE_NAME}"
    assert lines[1] == "2026-02-08 to 2026-02-12: 5 days, 3 with a snapshot, 2 without"
    assert lines[2] == ""
    header = lines[3]
    assert header.split() == [
        "date", "followers", "+1d", "+7d", "+30d", "following", "posts", "likes", "replies", "quotes", "reposts",
        "engagement", "+1d", "+7d", "+30d",
    ]  # fmt: skip
    body = lines[4:9]
    assert [line[:10] for line in body] == ["2026-02-08", "2026-02-09", "2026-02-10", "2026-02-11", "2026-02-12"]
    assert body[2] == "2026-02-10" and body[3] == "2026-02-11"
    # Right-aligned numbers: each value ends where its column title ends.
    feb9 = body[1]
    end = header.index("followers") + len("followers")
    assert feb9[:end].rstrip().endswith(str(1274)) and feb9[end - 1] == "4" and feb9[end] == " "
    # The first day after the two-day gap: no +1d, a +7d reaching back over it.
    feb12 = body[4].split()
    assert feb12[:3] == ["2026-02-12", "1298", "+93"]
    assert lines[-2:] == [
        "engagement = likes + replies + quotes + reposts.",
        "+1d, +7d, +30d: change of the column to their left since 1, 7 and 30 days before; "
        "empty when either day has no snapshot.",
    ]


def test_table_title_survives_control_characters_in_the_display_name(alice, etl_cli, postgresql):
    postgresql.execute('UPDATE users SET "displayName" = %s WHERE did = %s', ("Al\nice\x1b[31m", ALICE_DID))
    postgresql.commit()
    first_line = etl_cli("report", ALICE_HANDLE, "--days", "1").output.splitlines()[0]
    assert first_line == f"@{ALICE_HANDLE}  {ALICE_DID}  Al ice [31m"


# --- naming the user ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", [ALICE_HANDLE, "@" + ALICE_HANDLE, ALICE_DID, "@Alice.TEST", f"  {ALICE_HANDLE} "])
def test_handle_at_handle_and_did_name_the_same_user(alice, etl_cli, who):
    result = etl_cli("report", who, "--days", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["did"] == ALICE_DID


@pytest.mark.parametrize("who", ["nobody.test", "@nobody.test", "did:plc:nobody"])
def test_unknown_user_fails_with_exit_1_and_one_line(alice, etl_cli, who):
    result = etl_cli("report", who)
    assert result.exit_code == 1
    assert result.output == f"Error: no registered user matches '{who}'\n"


def test_user_without_snapshots_fails_with_exit_1(alice, etl_cli, postgresql):
    postgresql.execute("INSERT INTO users (did, handle) VALUES ('did:plc:new', 'new.test')")
    postgresql.commit()
    result = etl_cli("report", "new.test")
    assert result.exit_code == 1
    assert result.output == "Error: @new.test has no snapshots yet (etl run writes one per day)\n"


def test_days_must_be_positive(alice, etl_cli):
    result = etl_cli("report", ALICE_HANDLE, "--days", "0")
    assert result.exit_code == 2
    assert "Invalid value for '--days'" in result.output


def test_help_has_an_example(etl_cli):
    result = etl_cli("report", "--help")
    assert result.exit_code == 0
    assert "Example: etl report @alice.bsky.social" in result.output


# --- the chart ------------------------------------------------------------------------------------


def test_png_is_a_png_of_the_expected_size(alice, etl_cli, tmp_path):
    target = tmp_path / "growth.png"
    result = etl_cli("report", ALICE_HANDLE, "--days", "40", "--png", str(target))
    assert result.exit_code == 0, result.output
    assert png_size(target.read_bytes()) == (charts.WIDTH_PX, charts.HEIGHT_PX)
    assert result.stderr == f"Chart written to {target}.\n"
    assert result.stdout.startswith(f"@{ALICE_HANDLE}")


def test_png_with_json_keeps_stdout_pure_json(alice, etl_cli, tmp_path):
    target = tmp_path / "growth.png"
    result = etl_cli("report", ALICE_HANDLE, "--format", "json", "--png", str(target))
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    assert target.read_bytes()[:8] == PNG_MAGIC


def test_png_of_a_period_without_any_snapshot_still_renders(alice, etl_cli, tmp_path):
    target = tmp_path / "empty.png"
    result = etl_cli("report", ALICE_HANDLE, "--until", "2025-06-01", "--days", "10", "--png", str(target))
    assert result.exit_code == 0, result.output
    assert png_size(target.read_bytes()) == (charts.WIDTH_PX, charts.HEIGHT_PX)


def test_png_into_a_missing_directory_fails_with_exit_1(alice, etl_cli, tmp_path):
    target = tmp_path / "nowhere" / "growth.png"
    result = etl_cli("report", ALICE_HANDLE, "--png", str(target))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: cannot write {target}: No such file or directory"


def test_png_without_matplotlib_says_to_install_the_charts_extra(alice, etl_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    target = tmp_path / "growth.png"
    result = etl_cli("report", ALICE_HANDLE, "--png", str(target))
    assert result.exit_code == 1
    assert result.output == (
        "Error: --png needs matplotlib: install the charts extra (pip install 'dopplersky-workers[charts]')\n"
    )
    assert not target.exists()


def test_report_without_png_works_without_matplotlib(alice, etl_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = etl_cli("report", ALICE_HANDLE, "--days", "3", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 4


def test_chart_leaves_gaps_unconnected_and_labels_both_panels(alice, postgresql):
    from etl import report as reports

    account = reports.find_account(postgresql, ALICE_HANDLE)
    report = reports.build_report(postgresql, account, LAST_DAY, 20)
    fig = charts.growth_figure(report)
    top, bottom = fig.axes
    days = [row["date"] for row in report.days]
    followers = list(top.lines[0].get_ydata())
    # NaN (a break in the line) exactly on the days without a snapshot; no interpolated value.
    assert [d for d, v in zip(days, followers, strict=True) if v != v] == sorted(
        d for d in MISSING_DAYS if d >= report.first
    )
    assert top.get_ylabel() == "followers"
    assert bottom.get_ylabel() == "engagement gained per day"
    assert f"@{ALICE_HANDLE}" in fig.get_suptitle()
    # One bar per day; a day whose change is unknown has no height, and is shaded as a gap.
    bars = bottom.patches[: len(days)]
    assert len(bars) == len(days)
    feb12 = days.index(date(2026, 2, 12))
    assert bars[feb12].get_height() == 0 and report.days[feb12]["engagement_change_1d"] is None
    assert [text.get_text() for text in top.get_legend().get_texts()] == ["followers", "no snapshot (no change computed)"]


def test_gap_spans_group_consecutive_missing_days():
    days = [date(2026, 1, d) for d in range(1, 8)]
    nan = float("nan")
    values = [1.0, nan, nan, 4.0, nan, 6.0, nan]
    assert charts._gap_spans(days, values) == [
        (date(2026, 1, 2), date(2026, 1, 3)),
        (date(2026, 1, 5), date(2026, 1, 5)),
        (date(2026, 1, 7), date(2026, 1, 7)),
    ]
