"""Shards: the same function in SQL and Python, and the shard-index syntax."""

from __future__ import annotations

import random
import string

import pytest

from etl.shards import ShardSpecError, parse_shard_index, scheduler_shards, shard_of


def sample_dids(n: int) -> list[str]:
    rng = random.Random(20261203)
    alphabet = string.ascii_lowercase + "234567"
    dids = [f"did:plc:{''.join(rng.choices(alphabet, k=24))}" for _ in range(n - 12)]
    dids += [
        "did:web:example.com",
        "did:web:localhost%3A8080",
        "did:plc:ÄÖÜ-ünïcödé",
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
        "did:plc:😀emoji",
        "did:method:with:colons:inside",
        "",
        "x",
        "did:plc:" + "a" * 240,
        "'; DROP TABLE users; --",
        "did:plc:日本語",
        "did:plc:tab\there",
    ]
    return dids


def test_sql_and_python_shard_functions_agree_on_10000_dids(postgresql):
    dids = sample_dids(10_000)
    for count in (1, 2, 7, 8, 1024):
        rows = postgresql.execute(
            "SELECT d, etl_shard(d, %s) FROM unnest(%s::text[]) AS d", (count, dids)
        ).fetchall()
        mismatched = [(did, got) for did, got in rows if got != shard_of(did, count)]
        assert mismatched == [], (count, mismatched[:3])


def test_shards_spread_users_evenly():
    counts = [0] * 8
    for did in sample_dids(10_000):
        counts[shard_of(did, 8)] += 1
    assert min(counts) > 1_000 and max(counts) < 1_500


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("3", [3]), ("0-3", [0, 1, 2, 3]), ("1,5,7", [1, 5, 7]), ("0-1, 6-7", [0, 1, 6, 7]), ("2,2", [2])],
)
def test_shard_index_forms(spec, expected):
    assert parse_shard_index(spec, 8) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("8", "shard index 8 is out of range for 8 shards (0-7)"),
        ("3-1", "shard range '3-1' runs backwards"),
        ("a", "shard index 'a' is not a number or a range like 0-3"),
        ("1,,2", "empty shard index in '1,,2'"),
    ],
)
def test_bad_shard_index_says_why(spec, message):
    with pytest.raises(ShardSpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_shard_index(spec, 8)


def test_scheduler_index_variables():
    assert scheduler_shards(8, {}) is None
    assert scheduler_shards(8, {"JOB_COMPLETION_INDEX": "5"}) == ([5], "JOB_COMPLETION_INDEX")
    assert scheduler_shards(8, {"AWS_BATCH_JOB_ARRAY_INDEX": "0"}) == ([0], "AWS_BATCH_JOB_ARRAY_INDEX")
    assert scheduler_shards(4, {"CLOUD_RUN_TASK_INDEX": "3", "CLOUD_RUN_TASK_COUNT": "4"}) == ([3], "CLOUD_RUN_TASK_INDEX")
    assert scheduler_shards(4, {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4"}) == ([1], "SLURM_ARRAY_TASK_ID")
    with pytest.raises(ShardSpecError, match="CLOUD_RUN_TASK_COUNT=3 but the run has 4 shards"):
        scheduler_shards(4, {"CLOUD_RUN_TASK_INDEX": "0", "CLOUD_RUN_TASK_COUNT": "3"})
    with pytest.raises(ShardSpecError, match="JOB_COMPLETION_INDEX=9 is out of range for 8 shards"):
        scheduler_shards(8, {"JOB_COMPLETION_INDEX": "9"})
