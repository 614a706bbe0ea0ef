"""A simulated Bluesky AppView: a deterministic world served over XRPC, with faults on demand.

- `population`: the world (users, handles, statuses, posts, reposts, engagement) as pure functions.
- `views`: lexicon-shaped JSON of that world.
- `faults`: fault injection, rate limit, stats.
- `server`: the aiohttp app, `make_app`, `serve_in_thread`.
- `process`: `SimProcess`, the simulator in a child process.
- `lexicon`: lexicon JSON to JSON Schema, to validate answers in tests.
- `loadtest`: requests/s a simulator process sustains (`python -m etl.sim.loadtest`).
"""
