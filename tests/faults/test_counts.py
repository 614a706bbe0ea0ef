"""Counts the AppView garbles are marked unusable, so no snapshot is written from them."""

from __future__ import annotations

import pytest

from etl.validate import INT_MAX, post_from_view, profile_from_view

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
URI = f"at://{DID}/app.bsky.feed.post/3k2a"


def profile(**counts):
    return {"did": DID, "handle": "alice.test", "followersCount": 1, "followsCount": 2, "postsCount": 3, **counts}


def post(**counts):
    view = {
        "uri": URI,
        "author": {"did": DID},
        "record": {"createdAt": "2026-03-01T10:00:00Z"},
        "indexedAt": "2026-03-01T10:00:01Z",
        "likeCount": 1,
        "replyCount": 2,
        "quoteCount": 3,
        "repostCount": 4,
    }
    view.update(counts)
    return {k: v for k, v in view.items() if v is not MISSING}


MISSING = object()


@pytest.mark.parametrize("value", [MISSING, -1, 2.5, 3.0, "12", True, None, [1]])
def test_a_count_that_is_not_a_non_negative_integer_is_unusable(value):
    spoiled = profile_from_view({k: v for k, v in profile(followersCount=value).items() if v is not MISSING})
    assert spoiled.unusable == ("followersCount",) and spoiled.followers == 0
    bad_post = post_from_view(post(likeCount=value))
    assert bad_post.unusable == ("likeCount",) and bad_post.likes == 0


def test_sane_and_capped_counts_are_usable():
    assert profile_from_view(profile()).unusable == ()
    capped = post_from_view(post(likeCount=INT_MAX + 1))
    assert capped.likes == INT_MAX and capped.unusable == ()


def test_unusable_does_not_change_equality():
    assert profile_from_view(profile(followersCount=-1)) == profile_from_view(profile(followersCount=0))
