"""Named SQL statements loaded from the .sql files under sql/ (aiosql style, psycopg parameters).

A file holds one or more statements, each introduced by a `-- name: NAME` line; the comment lines
that follow the name are its documentation. Parameters are psycopg's named placeholders,
`%(name)s`; a literal percent sign is written `%%`. Anything malformed (text before the first
name, a bad or duplicate name, an empty body, a stray `%`) fails at load time with file:line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from etl.config import PROJECT_ROOT

SQL_DIR = PROJECT_ROOT / "sql"

_NAME = re.compile(r"^--\s*name:\s*(\S*)\s*$")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
# A placeholder %(name)s or %%; any other % is a mistake psycopg would only report at run time.
_PERCENT = re.compile(r"%(?:\(([^)]*)\)s|%)|%")


class SqlFileError(Exception):
    """A malformed .sql file; the message starts with file:line."""


@dataclass(frozen=True)
class Query:
    """One named statement and where it was defined."""

    name: str
    sql: str
    doc: str
    path: Path
    line: int

    @property
    def params(self) -> list[str]:
        return sorted({m.group(1) for m in _PERCENT.finditer(self.sql) if m.group(1)})


class Queries:
    """The statements of a directory, by name: `queries.merge_posts` is the SQL text."""

    def __init__(self, where: str, queries: dict[str, Query]):
        self._where = where
        self._queries = queries

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name).sql

    def get(self, name: str) -> Query:
        try:
            return self._queries[name]
        except KeyError:
            raise SqlFileError(f"no statement named {name!r} in {self._where}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._queries

    def __iter__(self):
        return iter(self._queries.values())


def parse_file(path: Path) -> list[Query]:
    """The named statements of one file, in order."""
    queries: list[Query] = []
    name: str | None = None
    start = 0
    doc: list[str] = []
    body: list[str] = []
    in_doc = False

    def finish() -> None:
        if name is None:
            return
        text = "\n".join(body).strip()
        if not text:
            raise SqlFileError(f"{path}:{start}: statement {name!r} has no SQL")
        for match in _PERCENT.finditer(text):
            if match.group(0) == "%":
                line = start + 1 + "\n".join(body)[: match.start()].count("\n")
                raise SqlFileError(f"{path}:{line}: stray % in {name!r} (write %% for a literal percent sign)")
            if match.group(1) is not None and not _IDENT.match(match.group(1)):
                raise SqlFileError(f"{path}:{start}: bad parameter name {match.group(1)!r} in {name!r}")
        queries.append(Query(name, text, " ".join(doc).strip(), path, start))

    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = _NAME.match(line.strip())
        if match:
            finish()
            name, start, doc, body, in_doc = match.group(1), number, [], [], True
            if not _IDENT.match(name):
                raise SqlFileError(f"{path}:{number}: bad statement name {name!r} (lower_case_with_underscores)")
            continue
        stripped = line.strip()
        if name is None:
            if stripped and not stripped.startswith("--"):
                raise SqlFileError(f"{path}:{number}: SQL before the first '-- name:' line")
            continue
        if in_doc and stripped.startswith("--"):
            doc.append(stripped[2:].strip())
            continue
        in_doc = False
        body.append(line)
    finish()
    return queries


def load(directory: Path) -> Queries:
    """Every named statement of the .sql files in a directory; names are unique across files."""
    found: dict[str, Query] = {}
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise SqlFileError(f"{directory}: no .sql files")
    for path in files:
        for query in parse_file(path):
            if query.name in found:
                first = found[query.name]
                raise SqlFileError(
                    f"{path}:{query.line}: statement {query.name!r} already defined at {first.path}:{first.line}"
                )
            found[query.name] = query
    return Queries(str(directory), found)


@cache
def queries(subdir: str) -> Queries:
    """The statements of sql/<subdir>, loaded once per process."""
    return load(SQL_DIR / subdir)


class _Lazy:
    """Loads its directory on first attribute access, so importing a module never reads files."""

    def __init__(self, subdir: str):
        self._subdir = subdir

    def __getattr__(self, name: str) -> str:
        return getattr(queries(self._subdir), name)


OPS = _Lazy("ops")
