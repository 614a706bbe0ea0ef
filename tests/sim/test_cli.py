"""`etl simulate` in its own process: one line with the URL, answers, a clean exit on signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from etl.sim.process import READY, REPO_ROOT, SimProcess, _read_line

from .conftest import Client


def test_simulate_prints_its_url_serves_and_exits_zero_on_sigterm() -> None:
    with SimProcess(users=500, seed=3, start=None, day=2, faults={"hostile": 0.1}, activity=0.5) as sim:
        assert sim.url is not None and READY.match(f"Simulated AppView listening on {sim.url}")
        client = Client(sim.url)
        assert client.get("/_sim/clock").json()["day"] == 2
        assert client.get("/_sim/faults").json()["rates"] == {"hostile": 0.1}
        did = client.get("/_sim/users", {"limit": 2}).json()["users"][1]["did"]
        assert client.xrpc("app.bsky.actor.getProfiles", {"actors": [did]}).status == 200
        info = client.get("/_sim/info").json()
        assert info["users"] == 500 and info["activity"] == 0.5
        assert sim.stop() == 0
        assert sim.process is not None and sim.process.stdout is not None and sim.process.stdout.closed


def test_simulate_exits_zero_on_sigint_too() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "etl", "simulate", "--users", "10", "--rate-limit", "100", "--rate-window", "10"],
        stdout=subprocess.PIPE, cwd=REPO_ROOT, env=env,
    )
    try:
        assert READY.match(_read_line(process.stdout, 30).decode())
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
        assert process.stdout.read() == b""  # exactly one line on stdout
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


@pytest.mark.parametrize("args", [["--fault", "teapot=0.5"], ["--fault", "500"], ["--users", "0"]])
def test_simulate_rejects_bad_options_with_a_usage_error(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "etl", "simulate", *args], capture_output=True, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=30,
    )
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr


def test_simulate_help_shows_an_example() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "etl", "simulate", "--help"], capture_output=True, text=True, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=30,
    )
    assert result.returncode == 0 and "etl simulate --users" in result.stdout
