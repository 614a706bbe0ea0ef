"""The workers' resource figures: their own, never their parent's."""

from __future__ import annotations

import multiprocessing

from etl.cpu import peak_rss_kb

PARENT_MB = 300


def _report(queue) -> None:
    queue.put(peak_rss_kb())


def test_a_spawned_worker_reports_its_own_peak_rss_not_its_parents():
    # getrusage's ru_maxrss survives the exec of a spawned child and would report this peak.
    ballast = bytearray(PARENT_MB * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    assert peak_rss_kb() > PARENT_MB * 1024
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_report, args=(queue,))
    child.start()
    child_kb = queue.get(timeout=60)
    child.join(timeout=60)
    assert 0 < child_kb < PARENT_MB * 1024 / 3
