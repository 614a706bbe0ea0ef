"""The lexicon to JSON Schema converter: refs across files, unions, lengths, formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.sim.lexicon import Lexicons, atproto_dir, graphemes


def _write(root: Path, nsid: str, defs: dict) -> None:
    path = root.joinpath(*nsid.split(".")).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"lexicon": 1, "id": nsid, "defs": defs}))


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Lexicons:
    root = tmp_path_factory.mktemp("lexicons")
    _write(root, "com.example.defs", {
        "thing": {
            "type": "object",
            "required": ["name", "when"],
            "nullable": ["note"],
            "properties": {
                "name": {"type": "string", "maxLength": 8, "maxGraphemes": 3},
                "when": {"type": "string", "format": "datetime"},
                "who": {"type": "string", "format": "did"},
                "note": {"type": "string"},
                "count": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "maxLength": 2, "items": {"type": "string"}},
                "self": {"type": "ref", "ref": "#other"},
                "open": {"type": "union", "refs": ["#other", "com.example.main"]},
                "closed": {"type": "union", "refs": ["#other"], "closed": True},
                "blob": {"type": "blob"},
                "any": {"type": "unknown"},
            },
        },
        "other": {"type": "object", "required": ["flag"], "properties": {"flag": {"type": "boolean"}}},
    })
    _write(root, "com.example.main", {
        "main": {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}},
    })
    _write(root, "com.example.query", {
        "main": {
            "type": "query",
            "output": {"encoding": "application/json", "schema": {"type": "ref", "ref": "com.example.defs#thing"}},
        },
    })
    return Lexicons(root)


GOOD = {"name": "abc", "when": "2026-01-01T00:00:00.000Z"}


def test_a_valid_object_has_no_errors_and_unknown_fields_are_allowed(toy: Lexicons) -> None:
    assert toy.errors("com.example.defs#thing", {**GOOD, "extra": [1, 2]}) == []
    assert toy.errors("com.example.query", GOOD) == []  # a query checks its output


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"name": None}, "name"),
        ({"when": "2026-01-01 00:00:00"}, "datetime"),
        ({"who": "did:NOPE"}, "did"),
        ({"count": -1}, "minimum"),
        ({"count": 1.5}, "integer"),
        ({"tags": ["a", "b", "c"]}, "too long"),
        ({"name": "ééééé"}, "UTF-8 bytes"),
        ({"name": "abcd"}, "graphemes"),
        ({"self": {}}, "flag"),
        ({"closed": {"$type": "com.example.defs#nope"}}, "com.example.defs#other"),
        ({"open": {"$type": "com.example.main"}}, "'x' is a required property"),
        ({"open": {"flag": True}}, "$type"),
        ({"blob": {"ref": "x"}}, "blob"),
        ({"any": "a string"}, "object"),
    ],
)
def test_violations_are_reported(toy: Lexicons, change: dict, fragment: str) -> None:
    instance = {**GOOD, **change}
    if change.get("name", "") is None:
        del instance["name"]
    errors = toy.errors("com.example.defs#thing", instance)
    assert errors and any(fragment in error for error in errors), errors


def test_open_unions_accept_unknown_types_and_nullable_fields_accept_null(toy: Lexicons) -> None:
    assert toy.errors("com.example.defs#thing", {**GOOD, "open": {"$type": "com.other#x", "y": 1}}) == []
    assert toy.errors("com.example.defs#thing", {**GOOD, "open": {"$type": "com.example.main#main", "x": 1}}) == []
    assert toy.errors("com.example.defs#thing", {**GOOD, "note": None}) == []
    blob = {"$type": "blob", "ref": {"$link": "bafkreiabcdefgh"}, "mimeType": "image/jpeg", "size": 1}
    assert toy.errors("com.example.defs#thing", {**GOOD, "blob": blob, "name": "🦋🦋"}) == []


def test_graphemes_count_joined_and_flag_emoji_once() -> None:
    assert graphemes("abc") == 3
    assert graphemes("🇧🇷🇯🇵") == 2
    assert graphemes("e\u0301") == 1
    assert graphemes("👩\u200d💻") == 2  # approximate: the joined pair counts as its parts


def test_the_real_lexicons_load_and_check_the_appview_shapes(lexicons: Lexicons) -> None:
    assert (atproto_dir() / "lexicons").is_dir()
    view = {"did": "did:plc:abc", "handle": "alice.test"}
    assert lexicons.errors("app.bsky.actor.defs#profileViewBasic", view) == []
    assert lexicons.errors("app.bsky.actor.defs#profileViewBasic", {"did": "did:plc:abc"})
    reason = {"post": {}, "reason": {"$type": "app.bsky.feed.defs#reasonRepost", "indexedAt": "2026-01-01T00:00:00Z"}}
    errors = lexicons.errors("app.bsky.feed.defs#feedViewPost", reason)
    assert any("'by' is a required property" in error for error in errors)
    with pytest.raises(KeyError):
        lexicons.validator("app.bsky.nothing.here")


def test_the_directory_can_be_moved_with_an_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ETL_ATPROTO_DIR", str(tmp_path))
    assert atproto_dir() == tmp_path
    with pytest.raises(FileNotFoundError):
        Lexicons()
