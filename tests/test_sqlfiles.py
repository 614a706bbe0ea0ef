"""SQL files: named statements load, and malformed ones fail at load time with file:line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from etl import sqlfiles
from etl.sqlfiles import SqlFileError, load, parse_file

REPO = Path(__file__).resolve().parents[1]


def sql_file(tmp_path: Path, text: str, name: str = "q.sql") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_named_statements_with_docs_and_parameters(tmp_path):
    path = sql_file(
        tmp_path,
        "-- file comment\n\n-- name: first_one\n-- Says what it does.\n-- On two lines.\nSELECT %(a)s, %(b)s, 100 %% 7\n\n"
        "-- name: second\nSELECT 1\n",
    )
    first, second = parse_file(path)
    assert (first.name, first.doc, first.line) == ("first_one", "Says what it does. On two lines.", 3)
    assert first.sql == "SELECT %(a)s, %(b)s, 100 %% 7"
    assert first.params == ["a", "b"]
    assert second.sql == "SELECT 1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT 1\n-- name: x\nSELECT 2\n", r"q.sql:1: SQL before the first '-- name:' line"),
        ("-- name: Bad-Name\nSELECT 1\n", r"q.sql:1: bad statement name 'Bad-Name'"),
        ("-- name: empty\n-- only a comment\n\n-- name: next\nSELECT 1\n", r"q.sql:1: statement 'empty' has no SQL"),
        ("-- name: pct\nSELECT 1\nWHERE x LIKE 'a%'\n", r"q.sql:3: stray % in 'pct'"),
        ("-- name: param\nSELECT %(bad name)s\n", r"q.sql:1: bad parameter name 'bad name'"),
    ],
)
def test_malformed_file_fails_with_file_and_line(tmp_path, text, message):
    path = sql_file(tmp_path, text)
    with pytest.raises(SqlFileError, match=message):
        parse_file(path)


def test_duplicate_name_across_files_names_both_places(tmp_path):
    sql_file(tmp_path, "-- name: same\nSELECT 1\n", "a.sql")
    sql_file(tmp_path, "\n-- name: same\nSELECT 2\n", "b.sql")
    with pytest.raises(SqlFileError, match=r"b.sql:2: statement 'same' already defined at .*a.sql:1"):
        load(tmp_path)


def test_missing_statement_names_the_directory(tmp_path):
    sql_file(tmp_path, "-- name: only\nSELECT 1\n")
    with pytest.raises(SqlFileError, match=r"no statement named 'other' in .*"):
        load(tmp_path).get("other")


def test_every_sql_directory_of_the_project_loads():
    for directory in sorted(p for p in sqlfiles.SQL_DIR.iterdir() if p.is_dir() and p.name != "migrations"):
        assert list(load(directory)), directory


def test_every_statement_the_code_names_exists():
    """A typo in OPS.name / ETL.name fails here, not in production."""
    pattern = re.compile(r"\b(OPS|ETL)\.(?!get\b)([a-z_][a-z0-9_]*)\b")
    dirs = {"OPS": "ops", "ETL": "etl"}
    for path in (REPO / "etl").rglob("*.py"):
        for kind, name in pattern.findall(path.read_text()):
            directory = sqlfiles.SQL_DIR / dirs[kind]
            if directory.is_dir():
                assert name in load(directory), f"{path}: {kind}.{name} is not defined in {directory}"
