"""atproto lexicons as JSON Schema, to check that answers have the real service's shape.

    lexicons = Lexicons()                       # every *.json under <atproto>/lexicons
    lexicons.validate("app.bsky.actor.getProfiles", answer)   # a query: its output schema
    lexicons.validate("app.bsky.feed.defs#postView", view)    # any def by reference
    lexicons.errors("app.bsky.feed.post", record)             # a record: its record schema

The atproto directory is `ETL_ATPROTO_DIR` when set, else the repository's copy in `tests/data/atproto`.

Conversion (one JSON-Schema `$defs` entry per lexicon def, `$ref`s between files resolved):
    object/params  properties, required, nullable; unknown properties allowed (the lexicon rule)
    string         format (datetime, did, handle, at-uri, uri, cid, language, at-identifier, nsid,
                   tid, record-key, checked by etl.sim.syntax), const, enum; maxLength/minLength
                   count UTF-8 bytes and maxGraphemes/minGraphemes grapheme clusters (approximated:
                   combining marks, joiners and variation selectors do not count), as the spec says
    integer/boolean minimum, maximum, enum, const
    array          items, minLength/maxLength as item counts
    ref            `$ref` to the named def (`#foo` local, `nsid#foo`, `nsid` for main)
    union          an object whose `$type` picks the branch; open unions accept other `$type`s,
                   `closed: true` ones do not
    unknown        any object;  blob, cid-link, bytes: their JSON encodings;  token: its own name
    record         its record object;  query/procedure: the output schema
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from jsonschema.exceptions import best_match

from etl.sim import syntax

REPO_ROOT = Path(__file__).resolve().parents[2]
_SEP = "::"  # between NSID and def name in $defs keys ('#' would need escaping in a JSON pointer)
_FORMATS = {
    "datetime": syntax.is_datetime,
    "did": syntax.is_did,
    "handle": syntax.is_handle,
    "at-uri": syntax.is_at_uri,
    "uri": syntax.is_uri,
    "cid": syntax.is_cid,
    "language": syntax.is_language,
    "at-identifier": syntax.is_at_identifier,
    "nsid": syntax.is_nsid,
    "tid": syntax.is_tid,
    "record-key": syntax.is_record_key,
}


def atproto_dir() -> Path:
    """The atproto reference data: $ETL_ATPROTO_DIR or the repository's copy in tests/data/atproto."""
    override = os.environ.get("ETL_ATPROTO_DIR")
    return Path(override) if override else REPO_ROOT / "tests" / "data" / "atproto"


def graphemes(text: str) -> int:
    """Approximate grapheme clusters: code points that start a new visible character."""
    count = 0
    regional = False
    for char in text:
        code = ord(char)
        if (
            code == 0x200D
            or 0xFE00 <= code <= 0xFE0F
            or 0x1F3FB <= code <= 0x1F3FF
            or 0xE0020 <= code <= 0xE007F
            or unicodedata.combining(char)
            or unicodedata.category(char) in ("Mn", "Me", "Mc")
        ):
            continue
        if 0x1F1E6 <= code <= 0x1F1FF:  # flags are pairs of regional indicators
            regional = not regional
            if not regional:
                continue
        count += 1
    return count


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _bytes_max(validator, limit, instance, schema) -> Iterator[ValidationError]:
    if isinstance(instance, str) and _utf8_len(instance) > limit:
        yield ValidationError(f"string is longer than {limit} UTF-8 bytes")


def _bytes_min(validator, limit, instance, schema) -> Iterator[ValidationError]:
    if isinstance(instance, str) and _utf8_len(instance) < limit:
        yield ValidationError(f"string is shorter than {limit} UTF-8 bytes")


def _graphemes_max(validator, limit, instance, schema) -> Iterator[ValidationError]:
    if isinstance(instance, str) and graphemes(instance) > limit:
        yield ValidationError(f"string has more than {limit} graphemes")


def _graphemes_min(validator, limit, instance, schema) -> Iterator[ValidationError]:
    if isinstance(instance, str) and graphemes(instance) < limit:
        yield ValidationError(f"string has fewer than {limit} graphemes")


LexiconValidator = validators.extend(
    Draft202012Validator,
    {
        "lexMaxBytes": _bytes_max,
        "lexMinBytes": _bytes_min,
        "lexMaxGraphemes": _graphemes_max,
        "lexMinGraphemes": _graphemes_min,
    },
)


def format_checker() -> FormatChecker:
    """A FormatChecker that knows the lexicon string formats (and only those)."""
    checker = FormatChecker(formats=())
    for name, check in _FORMATS.items():
        checker.checks(name)(check)
    return checker


def _key(nsid: str, name: str) -> str:
    return f"{nsid}{_SEP}{name}"


def _split(ref: str, nsid: str) -> tuple[str, str]:
    """(nsid, def name) of a ref as written inside lexicon `nsid`."""
    if ref.startswith("#"):
        return nsid, ref[1:]
    target, _, name = ref.partition("#")
    return target, name or "main"


def _type_name(nsid: str, name: str) -> str:
    """The `$type` value a union member of this def carries."""
    return nsid if name == "main" else f"{nsid}#{name}"


class Lexicons:
    """Every lexicon of a directory, converted to one JSON-Schema `$defs` table."""

    def __init__(self, root: Path | None = None) -> None:
        directory = root or atproto_dir() / "lexicons"
        if not directory.is_dir():
            raise FileNotFoundError(f"no lexicon directory at {directory} (set ETL_ATPROTO_DIR)")
        self.docs: dict[str, dict] = {}
        for path in sorted(directory.rglob("*.json")):
            doc = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(doc, dict) and "id" in doc and "defs" in doc:
                self.docs[doc["id"]] = doc
        self.defs: dict[str, dict] = {}
        for nsid, doc in self.docs.items():
            for name, definition in doc["defs"].items():
                self.defs[_key(nsid, name)] = self._convert(definition, nsid)
        self._checker = format_checker()
        self._validators: dict[str, Draft202012Validator] = {}

    def _ref(self, ref: str, nsid: str) -> dict:
        target, name = _split(ref, nsid)
        return {"$ref": f"#/$defs/{_key(target, name)}"}

    def _convert(self, d: dict, nsid: str) -> dict:
        """JSON Schema of one lexicon type definition."""
        kind = d.get("type")
        if kind == "ref":
            return self._ref(d["ref"], nsid)
        if kind == "union":
            return self._union(d, nsid)
        if kind in ("object", "params"):
            properties = {
                name: self._convert(prop, nsid) for name, prop in (d.get("properties") or {}).items()
            }
            for name in d.get("nullable", []):
                if name in properties:
                    properties[name] = {"anyOf": [properties[name], {"type": "null"}]}
            schema: dict = {"type": "object", "properties": properties}
            if d.get("required"):
                schema["required"] = list(d["required"])
            return schema
        if kind == "record":
            return self._convert(d["record"], nsid)
        if kind in ("query", "procedure"):
            output = (d.get("output") or {}).get("schema")
            return self._convert(output, nsid) if output else {}
        if kind == "string":
            return self._string(d)
        if kind == "integer":
            schema = {"type": "integer"}
            schema.update({k: d[k] for k in ("minimum", "maximum", "enum", "const") if k in d})
            return schema
        if kind == "boolean":
            return {"type": "boolean", **({"const": d["const"]} if "const" in d else {})}
        if kind == "array":
            schema = {"type": "array", "items": self._convert(d["items"], nsid)}
            if "maxLength" in d:
                schema["maxItems"] = d["maxLength"]
            if "minLength" in d:
                schema["minItems"] = d["minLength"]
            return schema
        if kind == "unknown":
            return {"type": "object"}
        if kind == "blob":
            return {
                "anyOf": [
                    {
                        "type": "object",
                        "required": ["$type", "ref", "mimeType", "size"],
                        "properties": {
                            "$type": {"const": "blob"},
                            "ref": {"type": "object", "required": ["$link"], "properties": {"$link": {"type": "string", "format": "cid"}}},
                            "mimeType": {"type": "string"},
                            "size": {"type": "integer"},
                        },
                    },
                    {"type": "object", "required": ["cid", "mimeType"]},  # the legacy encoding
                ]
            }
        if kind == "cid-link":
            return {"type": "object", "required": ["$link"], "properties": {"$link": {"type": "string", "format": "cid"}}}
        if kind == "bytes":
            return {"type": "object", "required": ["$bytes"], "properties": {"$bytes": {"type": "string"}}}
        if kind == "token":
            return {"type": "string"}
        if kind == "null":
            return {"type": "null"}
        return {}  # subscription, permission, permission-set: nothing to check in JSON

    def _string(self, d: dict) -> dict:
        schema: dict = {"type": "string"}
        if d.get("format") in _FORMATS:
            schema["format"] = d["format"]
        for lexicon_key, schema_key in (
            ("maxLength", "lexMaxBytes"),
            ("minLength", "lexMinBytes"),
            ("maxGraphemes", "lexMaxGraphemes"),
            ("minGraphemes", "lexMinGraphemes"),
            ("const", "const"),
            ("enum", "enum"),
        ):
            if lexicon_key in d:
                schema[schema_key] = d[lexicon_key]
        return schema

    def _union(self, d: dict, nsid: str) -> dict:
        branches = []
        names = []
        for ref in d.get("refs", []):
            target, name = _split(ref, nsid)
            accepted = [_type_name(target, name)] + ([f"{target}#main"] if name == "main" else [])
            names += accepted
            branches.append(
                {
                    "if": {"required": ["$type"], "properties": {"$type": {"enum": accepted}}},
                    "then": {"$ref": f"#/$defs/{_key(target, name)}"},
                }
            )
        type_schema: dict = {"enum": names} if d.get("closed") else {"type": "string"}
        schema: dict = {"type": "object", "required": ["$type"], "properties": {"$type": type_schema}}
        if branches:
            schema["allOf"] = branches
        return schema

    def validator(self, ref: str) -> Draft202012Validator:
        """A validator for `nsid` (its main def) or `nsid#name`."""
        cached = self._validators.get(ref)
        if cached is None:
            nsid, name = _split(ref, "")
            key = _key(nsid, name)
            if key not in self.defs:
                raise KeyError(f"no lexicon def {ref}")
            schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": self.defs, "$ref": f"#/$defs/{key}"}
            cached = self._validators[ref] = LexiconValidator(schema, format_checker=self._checker)
        return cached

    def errors(self, ref: str, instance: object) -> list[str]:
        """Every violation, as `path: message` lines (empty when the instance is valid)."""
        found = []
        for error in self.validator(ref).iter_errors(instance):
            path = "/".join(str(part) for part in error.absolute_path)
            found.append(f"{path or '(root)'}: {error.message[:300]}")
        return found

    def validate(self, ref: str, instance: object) -> None:
        """Raise the most relevant ValidationError when `instance` does not match `ref`."""
        error = best_match(self.validator(ref).iter_errors(instance))
        if error is not None:
            raise error


# XRPC's error envelope (the atproto HTTP spec, not a lexicon): every non-2xx JSON answer.
XRPC_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "minLength": 1}, "message": {"type": "string"}},
}


def xrpc_error_errors(body: object) -> list[str]:
    """Violations of the XRPC error envelope (empty when `body` is a proper error answer)."""
    return [error.message for error in Draft202012Validator(XRPC_ERROR_SCHEMA).iter_errors(body)]


@cache
def default_lexicons() -> Lexicons:
    """The lexicons of `atproto_dir()`, loaded once per process."""
    return Lexicons()
