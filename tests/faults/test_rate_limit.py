"""A 429 storm: the simulator's per-IP budget is far below what the run asks for at once."""

from __future__ import annotations

import pytest

from tests.faults.conftest import (
    check_end_state,
    end_state,
    rerun_completes,
    run_once,
    user_failures,
    world,
    written,
)

pytestmark = pytest.mark.slow


def test_a_429_storm_is_waited_out_per_retry_after_and_every_user_is_written(module_db, base, tmp_path):
    # 8 requests per 1-second window for 2 workers of 12 requests in flight each: most of every
    # burst is refused. The client has no pacing of its own (rate_limit 0), retries other
    # failures almost at once (backoff 10-50 ms) and has 1 attempt per request for failures: a
    # request that is refused (429), even again and again, must still get through by waiting as
    # told (its refusals have their own allowance, 10 x max_attempts).
    with world(
        module_db,
        base,
        tmp_path,
        "storm",
        users=20,
        backfill_max_posts=100,
        max_attempts=1,
        concurrency=12,
        sim_options={"rate_limit": 8, "rate_window": 1.0},
    ) as w:
        expect = w.expectation()
        expect.backfill_max_posts = 100
        w.sim.call(w.sim.state.stats.reset)
        report, as_of = run_once(w.settings, w.sim)
        stats = w.sim.state.stats.to_json()
        assert stats["rate_limited"] > 0, stats  # there was a storm
        assert report.api.rate_limited == stats["rate_limited"]
        assert user_failures(w.log_file) == {}
        assert report.exit_code == 0 and report.status == "completed"
        expect.after_run(as_of, written(w.dsn, as_of.date()))
        state = end_state(w.dsn, expect, as_of.date())
        check_end_state(state, expect)
        assert sum(row["rate_limited"] for row in state.shards) == stats["rate_limited"]
        rerun_completes(w.settings, w.sim, w.dsn, expect, as_of)
