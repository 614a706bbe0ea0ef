"""The syntax checks agree with the atproto interop files; identifiers round-trip."""

from __future__ import annotations

import pytest

from etl.sim import syntax
from etl.sim.ids import Hasher, decode_did, encode_did, iso, iso_offset, tid, tid_timestamp
from etl.sim.lexicon import atproto_dir

CHECKS = {
    "did": syntax.is_did,
    "handle": syntax.is_handle,
    "nsid": syntax.is_nsid,
    "tid": syntax.is_tid,
    "recordkey": syntax.is_record_key,
    "aturi": syntax.is_at_uri,
    "datetime": syntax.is_datetime,
    "language": syntax.is_language,
    "atidentifier": syntax.is_at_identifier,
}


def _lines(name: str) -> list[str]:
    path = atproto_dir() / "interop-test-files" / "syntax" / f"{name}.txt"
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("kind", sorted(CHECKS))
def test_every_interop_valid_line_passes_and_every_invalid_line_fails(kind: str) -> None:
    check = CHECKS[kind]
    assert [line for line in _lines(f"{kind}_syntax_valid") if not check(line)] == []
    assert [line for line in _lines(f"{kind}_syntax_invalid") if check(line)] == []


def test_datetimes_that_match_the_syntax_but_name_no_instant_are_rejected() -> None:
    assert [line for line in _lines("datetime_parse_invalid") if syntax.is_datetime(line)] == []


def test_parse_datetime_honours_the_offset() -> None:
    parsed = syntax.parse_datetime("2026-01-01T09:00:00.000+09:00")
    assert parsed is not None and parsed.timestamp() == syntax.parse_datetime("2026-01-01T00:00:00Z").timestamp()


def test_did_round_trips_and_foreign_dids_are_unknown() -> None:
    hasher = Hasher(1)
    for index in (0, 1, 999, 123_456, 10**9):
        did = encode_did(hasher, index)
        assert syntax.is_did(did) and len(did) == 32 and did.startswith("did:plc:")
        assert decode_did(hasher, did) == index
    assert decode_did(Hasher(2), encode_did(hasher, 5)) is None
    assert decode_did(hasher, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa") is None
    assert decode_did(hasher, "did:web:example.com") is None


def test_tid_is_valid_sortable_and_carries_its_time() -> None:
    times = [1_700_000_000_000_000, 1_700_000_000_001_000, 1_800_000_000_000_000]
    tids = [tid(t, 5) for t in times]
    assert all(syntax.is_tid(value) for value in tids)
    assert tids == sorted(tids)
    assert [tid_timestamp(value) for value in tids] == times
    assert tid_timestamp("not-a-tid-000") is None


def test_iso_strings_are_valid_datetimes() -> None:
    us = 1_767_225_600_123_456
    assert iso(us) == "2026-01-01T00:00:00.123Z"
    assert iso(us, 6) == "2026-01-01T00:00:00.123456Z"
    offset = iso_offset(us, 330)
    assert offset == "2026-01-01T05:30:00.123+05:30"
    assert syntax.parse_datetime(offset).timestamp() == syntax.parse_datetime(iso(us)).timestamp()
