"""Which shard a user belongs to, and which shards this machine runs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

# DESIGN section 5: the scheduler tells each task its index; the count variable, where the
# scheduler has one, must agree with --shards.
SCHEDULER_INDEX_VARIABLES = (
    ("JOB_COMPLETION_INDEX", None),  # Kubernetes Indexed Job
    ("AWS_BATCH_JOB_ARRAY_INDEX", None),  # AWS Batch array job
    ("CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_COUNT"),  # Cloud Run jobs
    ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),  # Slurm job arrays
)
# Advisory lock keys pack (run id, shard) into one int32; this bounds the shard count.
MAX_SHARDS = 1024


class ShardSpecError(ValueError):
    """A shard index or count that cannot be used; the message says why."""


def shard_of(did: str, shard_count: int) -> int:
    """The shard of a DID: first 4 bytes of md5(did) as an unsigned int, modulo the count (= SQL etl_shard)."""
    return int.from_bytes(hashlib.md5(did.encode("utf-8")).digest()[:4], "big") % shard_count


def parse_shard_index(spec: str, shard_count: int) -> list[int]:
    """`I`, `I-J` or `I,J,K` (0-based, J inclusive) as a sorted list, checked against the count."""
    shards: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            raise ShardSpecError(f"empty shard index in {spec!r}")
        try:
            low, high = (int(x) for x in part.split("-", 1)) if "-" in part else (int(part), int(part))
        except ValueError:
            raise ShardSpecError(f"shard index {part!r} is not a number or a range like 0-3") from None
        if low > high:
            raise ShardSpecError(f"shard range {part!r} runs backwards")
        shards.update(range(low, high + 1))
    bad = sorted(s for s in shards if not 0 <= s < shard_count)
    if bad:
        raise ShardSpecError(f"shard index {bad[0]} is out of range for {shard_count} shards (0-{shard_count - 1})")
    return sorted(shards)


def scheduler_shards(shard_count: int, environ: Mapping[str, str] | None = None) -> tuple[list[int], str] | None:
    """The shard a scheduler assigned to this task (and the variable that said so), if any."""
    environ = os.environ if environ is None else environ
    for index_var, count_var in SCHEDULER_INDEX_VARIABLES:
        raw = environ.get(index_var, "").strip()
        if not raw:
            continue
        if count_var and environ.get(count_var, "").strip():
            count = environ[count_var].strip()
            if count != str(shard_count):
                raise ShardSpecError(f"{count_var}={count} but the run has {shard_count} shards (--shards)")
        try:
            index = int(raw)
        except ValueError:
            raise ShardSpecError(f"{index_var}={raw!r} is not a shard index") from None
        if not 0 <= index < shard_count:
            raise ShardSpecError(f"{index_var}={index} is out of range for {shard_count} shards")
        return [index], index_var
    return None
