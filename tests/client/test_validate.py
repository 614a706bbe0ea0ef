"""etl.validate against the atproto interop syntax files, and the repairs of odd AppView data."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta

import pytest

from etl import validate
from etl.sim.lexicon import atproto_dir
from etl.validate import (
    INT_MAX,
    Post,
    Profile,
    clean_count,
    clean_text,
    parse_datetime,
    post_from_view,
    post_time,
    profile_from_view,
    sort_time,
)
from tests.client.conftest import PIN, did_n, item, post_view, profile_view, repost_by, uri_of

SYNTAX = atproto_dir() / "interop-test-files" / "syntax"

CHECKS = {
    "did": validate.is_did,
    "handle": validate.is_handle,
    "aturi": validate.is_at_uri,
    "datetime": validate.is_datetime,
    "nsid": validate.is_nsid,
    "recordkey": validate.is_record_key,
}


def syntax_cases(filename: str) -> list:
    """One param per line of an interop file: blank lines and # comments skipped, spaces kept."""
    path = SYNTAX / filename  # a missing file is a collection error, never a silent skip
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        # Leading and trailing spaces are part of some cases (" john.test" must be rejected).
        if line == "" or line.startswith("#"):
            continue
        cases.append(pytest.param(line, id=f"L{number}:{line[:40]}"))
    return cases


@pytest.mark.parametrize("kind", list(CHECKS))
def test_syntax_files_are_found(kind):
    assert (SYNTAX / f"{kind}_syntax_valid.txt").is_file(), f"missing {SYNTAX}; set ETL_ATPROTO_DIR"


@pytest.mark.parametrize("value", syntax_cases("did_syntax_valid.txt"))
def test_valid_did_is_accepted(value):
    assert validate.is_did(value)


@pytest.mark.parametrize("value", syntax_cases("did_syntax_invalid.txt"))
def test_invalid_did_is_rejected(value):
    assert not validate.is_did(value)


@pytest.mark.parametrize("value", syntax_cases("handle_syntax_valid.txt"))
def test_valid_handle_is_accepted(value):
    assert validate.is_handle(value)


@pytest.mark.parametrize("value", syntax_cases("handle_syntax_invalid.txt"))
def test_invalid_handle_is_rejected(value):
    assert not validate.is_handle(value)


@pytest.mark.parametrize("value", syntax_cases("aturi_syntax_valid.txt"))
def test_valid_at_uri_is_accepted(value):
    assert validate.is_at_uri(value)


@pytest.mark.parametrize("value", syntax_cases("aturi_syntax_invalid.txt"))
def test_invalid_at_uri_is_rejected(value):
    assert not validate.is_at_uri(value)


@pytest.mark.parametrize("value", syntax_cases("datetime_syntax_valid.txt"))
def test_valid_datetime_is_accepted_and_parses_to_aware_utc(value):
    assert validate.is_datetime(value)
    parsed = parse_datetime(value)
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", syntax_cases("datetime_syntax_invalid.txt"))
def test_invalid_datetime_is_rejected(value):
    assert not validate.is_datetime(value)
    assert parse_datetime(value) is None


@pytest.mark.parametrize("value", syntax_cases("datetime_parse_invalid.txt"))
def test_datetime_that_is_no_real_date_parses_to_none(value):
    assert parse_datetime(value) is None


@pytest.mark.parametrize("value", syntax_cases("nsid_syntax_valid.txt"))
def test_valid_nsid_is_accepted(value):
    assert validate.is_nsid(value)


@pytest.mark.parametrize("value", syntax_cases("nsid_syntax_invalid.txt"))
def test_invalid_nsid_is_rejected(value):
    assert not validate.is_nsid(value)


@pytest.mark.parametrize("value", syntax_cases("recordkey_syntax_valid.txt"))
def test_valid_record_key_is_accepted(value):
    assert validate.is_record_key(value)


@pytest.mark.parametrize("value", syntax_cases("recordkey_syntax_invalid.txt"))
def test_invalid_record_key_is_rejected(value):
    assert not validate.is_record_key(value)


@pytest.mark.parametrize("value", [None, 42, b"did:plc:abc", ["did:plc:abc"], "did:plc:abc\n"])
def test_checks_reject_non_strings_and_trailing_newlines(value):
    assert not any(check(value) for check in CHECKS.values())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1985-04-12T23:20:50.123Z", datetime(1985, 4, 12, 23, 20, 50, 123000, UTC)),
        ("1985-04-12T23:20:50.123-07:00", datetime(1985, 4, 13, 6, 20, 50, 123000, UTC)),
        ("1985-04-12T23:20:50.123+01:45", datetime(1985, 4, 12, 21, 35, 50, 123000, UTC)),
        ("1985-04-12T23:20:50.1234567891Z", datetime(1985, 4, 12, 23, 20, 50, 123456, UTC)),
        ("1985-04-12T23:20:50Z", datetime(1985, 4, 12, 23, 20, 50, 0, UTC)),
    ],
)
def test_parse_datetime_applies_offsets_and_truncates_to_microseconds(text, expected):
    assert parse_datetime(text) == expected


@pytest.mark.parametrize("text", ["9999-12-31T23:00:00-07:00", "1985-04-12T23:20:50+25:00", "1985-02-29T00:00:00Z"])
def test_parse_datetime_returns_none_for_out_of_range_values(text):
    assert parse_datetime(text) is None


# --- clean_text --------------------------------------------------------------------------------


def test_clean_text_removes_nul_characters():
    assert clean_text("a\x00b\x00", 255) == "ab"


def test_clean_text_replaces_lone_surrogates_so_utf8_encoding_works():
    import json

    text = json.loads('"x\\ud800y\\udfffz"')
    cleaned = clean_text(text, 255)
    assert cleaned == "x\ufffdy\ufffdz"
    cleaned.encode("utf-8")


def test_clean_text_keeps_valid_surrogate_pairs_and_other_unicode():
    import json

    text = json.loads('"smile \\ud83d\\ude00 caf\\u00e9"')
    assert clean_text(text, 255) == "smile 😀 café"


def test_clean_text_caps_length_in_characters():
    assert clean_text("é" * 300, 255) == "é" * 255
    assert clean_text("short", 255) == "short"


def test_clean_text_cap_counts_after_removing_nuls():
    assert clean_text("\x00" * 10 + "a" * 255, 255) == "a" * 255


# --- clean_count -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected, warns",
    [
        (0, 0, False),
        (17, 17, False),
        (INT_MAX, INT_MAX, False),
        (INT_MAX + 1, INT_MAX, True),
        (10**30, INT_MAX, True),
        (-1, 0, True),
        (None, 0, True),
        (3.0, 0, True),
        (2.5, 0, True),
        ("12", 0, True),
        (True, 0, True),
        (False, 0, True),
        ([1], 0, True),
    ],
)
def test_clean_count_repairs_odd_values_with_a_warning_naming_item_and_field(value, expected, warns, caplog):
    with caplog.at_level(logging.WARNING, logger="etl.validate"):
        assert clean_count(value, "likeCount", "at://did:plc:x/app.bsky.feed.post/1") == expected
    assert bool(caplog.records) == warns
    if warns:
        assert "likeCount" in caplog.text and "at://did:plc:x/app.bsky.feed.post/1" in caplog.text


# --- post_time ---------------------------------------------------------------------------------

INDEXED = "2026-03-01T12:00:00.000Z"
INDEXED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "created, indexed, expected",
    [
        ("2026-03-01T11:59:00.000Z", INDEXED, datetime(2026, 3, 1, 11, 59, tzinfo=UTC)),
        ("2026-03-01T13:59:00.000+02:00", INDEXED, datetime(2026, 3, 1, 11, 59, tzinfo=UTC)),
        ("2019-01-01T00:00:00Z", INDEXED, datetime(2019, 1, 1, tzinfo=UTC)),  # backdated: kept
        ("2026-03-01T12:09:00.000Z", INDEXED, datetime(2026, 3, 1, 12, 9, tzinfo=UTC)),  # small skew: kept
        ("2026-03-01T12:11:00.000Z", INDEXED, INDEXED_AT),  # more than 10 minutes ahead
        ("2099-01-01T00:00:00.000Z", INDEXED, INDEXED_AT),  # far future
        ("not a date", INDEXED, INDEXED_AT),
        ("2026-03-01 11:00:00Z", INDEXED, INDEXED_AT),
        ("2026-02-30T11:00:00Z", INDEXED, INDEXED_AT),
        (None, INDEXED, INDEXED_AT),
        (12345, INDEXED, INDEXED_AT),
        ("2026-03-01T11:00:00Z", "garbage", datetime(2026, 3, 1, 11, tzinfo=UTC)),
        ("2099-01-01T00:00:00Z", None, datetime(2099, 1, 1, tzinfo=UTC)),
        ("garbage", "garbage", None),
    ],
)
def test_post_time_uses_created_at_unless_unparsable_or_in_the_future(created, indexed, expected):
    assert post_time(created, indexed) == expected


# --- profiles ----------------------------------------------------------------------------------


def test_profile_from_view_maps_fields():
    did = did_n(1)
    profile = profile_from_view(profile_view(did, "Alice.Bsky.Social", displayName="Alice"))
    assert profile == Profile(did, "alice.bsky.social", "Alice", profile_view(did)["avatar"], 10, 20, 30)


@pytest.mark.parametrize("bad", ["not-a-did", "did:plc:", None, 5, "did:web:" + "a" * 300])
def test_profile_with_invalid_or_too_long_did_is_dropped_with_a_warning(bad, caplog):
    with caplog.at_level(logging.WARNING, logger="etl.validate"):
        assert profile_from_view(profile_view("did:plc:x") | {"did": bad}) is None
    assert "dropped" in caplog.text


@pytest.mark.parametrize("bad", ["no_underscores.test", "-dash.test", "", None, 7, "a" * 300 + ".test"])
def test_invalid_handle_becomes_handle_invalid_with_a_warning(bad, caplog):
    with caplog.at_level(logging.WARNING, logger="etl.validate"):
        profile = profile_from_view(profile_view(did_n(2), handle="x.test") | {"handle": bad})
    assert profile.handle == "handle.invalid"
    assert did_n(2) in caplog.text


def test_handle_invalid_passes_through_without_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="etl.validate"):
        assert profile_from_view(profile_view(did_n(3), "handle.invalid")).handle == "handle.invalid"
    assert not caplog.records


def test_profile_strings_are_cleaned_and_capped_to_their_columns():
    view = profile_view(did_n(4), displayName="A\x00B\ud800" + "x" * 1000, avatar="https://a/\x00b")
    profile = profile_from_view(view)
    assert profile.display_name.startswith("AB\ufffd") and len(profile.display_name) == 255
    assert profile.avatar == "https://a/b"


def test_overlong_avatar_is_dropped_not_truncated(caplog):
    with caplog.at_level(logging.WARNING, logger="etl.validate"):
        profile = profile_from_view(profile_view(did_n(5), avatar="https://x/" + "a" * 3000))
    assert profile.avatar is None and "avatar" in caplog.text


def test_missing_or_odd_profile_fields_are_repaired():
    view = {"did": did_n(6), "handle": "six.test", "displayName": 12, "followersCount": -5, "postsCount": "9"}
    assert profile_from_view(view) == Profile(did_n(6), "six.test", None, None, 0, 0, 0)


def test_models_are_frozen_and_slotted():
    profile = profile_from_view(profile_view(did_n(7)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.handle = "x.test"
    assert not hasattr(profile, "__dict__")
    assert not hasattr(post_from_view(post_view(did_n(7), "a")), "__dict__")


# --- posts -------------------------------------------------------------------------------------


def test_post_from_view_maps_fields():
    did = did_n(8)
    post = post_from_view(post_view(did, "3k2a", created="2026-03-01T11:00:00.000+01:00", indexed=INDEXED))
    assert post == Post(uri_of(did, "3k2a"), did, datetime(2026, 3, 1, 10, tzinfo=UTC), 3, 1, 4, 2)


@pytest.mark.parametrize(
    "uri",
    [
        "https://bsky.app/profile/x/post/1",
        "at://did:plc:000000000000000000000008/app.bsky.feed.post/bad key",
        "at://did:plc:000000000000000000000008",
        "at://did:plc:000000000000000000000008/app.bsky.feed.like/3k2a",
        "at://did:plc:000000000000000000000008/app.bsky.feed.post/3k2a#/frag",
        None,
    ],
)
def test_post_with_invalid_or_non_post_uri_is_dropped_with_a_warning(uri, caplog):
    with caplog.at_level(logging.WARNING, logger="etl.validate"):
        assert post_from_view(post_view(did_n(8), "x") | {"uri": uri}) is None
    assert "dropped" in caplog.text


def test_post_uri_longer_than_the_column_is_dropped():
    did = "did:web:" + "a" * 200
    view = post_view(did, "k" * 400)
    assert validate.is_at_uri(view["uri"]) and len(view["uri"]) > 500
    assert post_from_view(view) is None


def test_post_whose_uri_belongs_to_another_account_is_dropped(caplog):
    view = post_view(did_n(9), "3k2a") | {"author": {"did": did_n(10), "handle": "x.test"}}
    with caplog.at_level(logging.WARNING, logger="etl.validate"):
        assert post_from_view(view) is None
    assert uri_of(did_n(9), "3k2a") in caplog.text


def test_unparsable_created_at_falls_back_to_indexed_at_with_a_warning(caplog):
    view = post_view(did_n(11), "a", created="yesterday", indexed=INDEXED)
    with caplog.at_level(logging.WARNING, logger="etl.validate"):
        assert post_from_view(view).created_at == INDEXED_AT
    assert "createdAt" in caplog.text and uri_of(did_n(11), "a") in caplog.text


def test_far_future_created_at_is_replaced_by_indexed_at_with_a_warning(caplog):
    view = post_view(did_n(12), "a", created="2099-01-01T00:00:00Z", indexed=INDEXED)
    with caplog.at_level(logging.WARNING, logger="etl.validate"):
        assert post_from_view(view).created_at == INDEXED_AT
    assert "future" in caplog.text


def test_post_without_any_usable_time_is_dropped():
    assert post_from_view(post_view(did_n(13), "a", created="x", indexed="y")) is None
    assert post_from_view(post_view(did_n(13), "a") | {"record": "not an object", "indexedAt": None}) is None


def test_post_counts_are_repaired():
    view = post_view(did_n(14), "a", likeCount=None, replyCount=-1, quoteCount=2**40, repostCount="7")
    post = post_from_view(view)
    assert (post.likes, post.replies, post.quotes, post.reposts) == (0, 0, INT_MAX, 0)


@pytest.mark.parametrize(
    "view",
    [None, [], "x", 3, {}, {"uri": {}}, {"uri": uri_of(did_n(1), "a"), "author": []}, {"uri": uri_of(did_n(1), "a")}],
)
def test_builders_never_raise_on_garbage(view):
    assert post_from_view(view) is None
    assert profile_from_view(view) is None


def test_sort_time_is_repost_time_for_reposts_and_min_of_created_and_indexed_otherwise():
    post = post_view(did_n(15), "a", created="2026-03-01T10:00:00Z", indexed="2026-03-01T11:00:00Z")
    assert sort_time(item(post)) == datetime(2026, 3, 1, 10, tzinfo=UTC)
    future = post_view(did_n(15), "b", created="2099-01-01T00:00:00Z", indexed="2026-03-01T11:00:00Z")
    assert sort_time(item(future)) == datetime(2026, 3, 1, 11, tzinfo=UTC)
    reposted = item(post, repost_by(did_n(16), "2026-03-05T00:00:00Z"))
    assert sort_time(reposted) == datetime(2026, 3, 5, tzinfo=UTC)
    assert sort_time(item(post, PIN)) == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert sort_time("garbage") is None
