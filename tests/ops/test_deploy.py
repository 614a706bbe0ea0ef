"""The deployment files: their fields, and every command, flag and variable they use exists."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml

from etl.cli import cli
from etl.config import ENV_TO_KEY, read_env_file
from etl.pool import STOP_GRACE_SECONDS
from etl.shards import SCHEDULER_INDEX_VARIABLES
from tests.conftest import REPO

DEPLOY = REPO / "config" / "deploy"
CRONJOB = DEPLOY / "kubernetes" / "cronjob.yaml"
SERVICE = DEPLOY / "systemd" / "dopplersky-etl.service"
TIMER = DEPLOY / "systemd" / "dopplersky-etl.timer"
ENV_EXAMPLE = DEPLOY / "systemd" / "etl.env.example"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"
INSTALL_DIR = "/opt/dopplersky-workers"

# Variables the deployment files may set that are not settings: the scheduler's (read by
# etl/shards.py) and these, each for a stated reason.
STANDARD_VARIABLES = {
    "PYTHONUNBUFFERED",  # log lines reach journald / kubectl logs at once
    "PYTHONDONTWRITEBYTECODE",  # read-only code directories
    "PIP_NO_CACHE_DIR",  # image build only
    "PIP_DISABLE_PIP_VERSION_CHECK",  # image build only
}
SCHEDULER_VARIABLES = {name for pair in SCHEDULER_INDEX_VARIABLES for name in pair if name}
# The AppView's budget per IP address (DESIGN section 3).
REQUESTS_PER_IP = 10.0


# --- reading the files ----------------------------------------------------------------------------


def k8s_documents() -> list[dict]:
    return [doc for doc in yaml.safe_load_all(CRONJOB.read_text()) if doc]


def k8s_kind(kind: str) -> list[dict]:
    return [doc for doc in k8s_documents() if doc["kind"] == kind]


def cronjob() -> dict:
    [job] = k8s_kind("CronJob")
    return job


def job_spec() -> dict:
    return cronjob()["spec"]["jobTemplate"]["spec"]


def pod_spec() -> dict:
    return job_spec()["template"]["spec"]


def pod_containers() -> list[dict]:
    spec = pod_spec()
    return spec.get("initContainers", []) + spec["containers"]


def unit(path: Path) -> configparser.ConfigParser:
    """A systemd unit file as configparser reads it (later duplicate keys win)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def unit_values(path: Path, key: str) -> list[str]:
    """Every value of a key that may repeat (ExecStartPre=, Environment=, ReadWritePaths=)."""
    return [m.group(1).strip() for m in re.finditer(rf"^{key}=(.*)$", path.read_text(), re.MULTILINE)]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def docker_exec_form(instruction: str) -> list[str]:
    [args] = [rest for word, rest in dockerfile_instructions() if word == instruction]
    return json.loads(args)  # exec form: a JSON array, so signals reach etl as PID 1


def seconds(text: str) -> float:
    """A systemd time span such as 60s, 10min, 20h or 1h 30min."""
    units = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86400, "": 1}
    total = 0.0
    for number, suffix in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units[suffix]
    return total


# --- the invocations and variables the files use ---------------------------------------------------


def etl_invocations() -> Iterator[tuple[str, list[str]]]:
    """(where, arguments after `etl`) for every etl command the deployment files run."""
    entrypoint = docker_exec_form("ENTRYPOINT")
    assert entrypoint == ["etl"]
    yield "Dockerfile CMD", docker_exec_form("CMD")
    for container in pod_containers():
        assert "command" not in container, "containers run the image's entrypoint, etl"
        yield f"cronjob.yaml container {container['name']}", list(container["args"])
    for key in ("ExecStartPre", "ExecStart"):
        for value in unit_values(SERVICE, key):
            argv = shlex.split(value.lstrip("-+!@:"))
            assert argv[0] == f"{INSTALL_DIR}/bin/etl", value
            yield f"{SERVICE.name} {key}", argv[1:]
    for block in re.findall(r"```bash\n(.*?)```", (DEPLOY / "README.md").read_text(), re.DOTALL):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0] in ("etl", "bin/etl", f"{INSTALL_DIR}/bin/etl"):
                yield "README.md", argv[1:]
            if argv[:2] == ["docker", "run"]:
                # docker run [options] IMAGE [etl arguments]
                image = next(i for i, a in enumerate(argv) if a.startswith("dopplersky-workers:"))
                yield "README.md docker run", argv[image + 1 :] or docker_exec_form("CMD")


def variable_names() -> Iterator[tuple[str, str]]:
    """(where, NAME) for every environment variable the deployment files set."""
    for doc in k8s_kind("ConfigMap"):
        for name in doc.get("data", {}):
            yield f"ConfigMap {doc['metadata']['name']}", name
    for container in pod_containers():
        for env in container.get("env", []):
            yield f"container {container['name']}", env["name"]
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                yield f"Secret {ref['name']}", ref["key"]
    for value in unit_values(SERVICE, "Environment"):
        for assignment in shlex.split(value):
            yield SERVICE.name, assignment.split("=", 1)[0]
    for name, _, _ in read_env_file(ENV_EXAMPLE):
        yield ENV_EXAMPLE.name, name
    # Commented-out examples too: an operator uncomments them as they are.
    for name in re.findall(r"^#\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE):
        yield f"{ENV_EXAMPLE.name} (commented)", name
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for assignment in shlex.split(rest):
                yield "Dockerfile ENV", assignment.split("=", 1)[0]
    for block in re.findall(r"```bash\n(.*?)```", (DEPLOY / "README.md").read_text(), re.DOTALL):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:2] == ["docker", "run"]:
                for flag, value in zip(argv, argv[1:], strict=False):
                    if flag in ("-e", "--env"):
                        yield "README.md docker run", value.split("=", 1)[0]


def parse_invocation(argv: list[str]) -> click.Context:
    """Parse arguments exactly as `etl` would, without running anything; UsageError if wrong."""
    ctx = cli.make_context("etl", list(argv))
    command: click.Command = cli
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def option_value(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


# --- every name used exists ------------------------------------------------------------------------


def test_every_etl_invocation_parses_against_the_cli():
    seen = []
    for where, argv in etl_invocations():
        try:
            ctx = parse_invocation(argv)
        except click.UsageError as exc:
            pytest.fail(f"{where}: `etl {shlex.join(argv)}`: {exc.format_message()}")
        seen.append(ctx.command_path)
    assert {"etl run", "etl schema apply"} <= set(seen)


@pytest.mark.parametrize(
    "argv",
    [["run", "--shardz", "8"], ["run", "--shards", "eight"], ["scheme", "apply"], ["schema", "aply"]],
)
def test_the_invocation_check_catches_renamed_commands_and_flags(argv):
    with pytest.raises(click.UsageError):
        parse_invocation(argv)


def test_the_invocation_check_walks_commands_and_their_options():
    ctx = parse_invocation(["--config", "x.yaml", "run", "--shards", "8"])
    assert ctx.command_path == "etl run" and ctx.params["shards"] == 8
    names = {opt for param in ctx.command.params for opt in param.opts}
    assert {"--shards", "--shard-index", "--config"} <= names


def test_every_environment_variable_is_a_setting_or_an_allowed_one():
    allowed = set(ENV_TO_KEY) | SCHEDULER_VARIABLES | STANDARD_VARIABLES
    unknown = sorted({f"{where}: {name}" for where, name in variable_names() if name not in allowed})
    assert not unknown, unknown
    used = {name for _, name in variable_names()}
    assert {"DATABASE_URL", "ETL_RATE_LIMIT"} <= used


def test_env_example_values_pass_the_settings_validation(tmp_path):
    from etl.config import load_settings

    settings = load_settings(config_file=ENV_EXAMPLE, environ={}, cwd=tmp_path)
    assert settings.rate_limit <= REQUESTS_PER_IP
    assert settings.origin["database_url"].startswith(str(ENV_EXAMPLE))


def test_configmap_values_pass_the_settings_validation(tmp_path):
    from etl.config import load_settings

    [configmap] = k8s_kind("ConfigMap")
    environ = {k: v for k, v in configmap["data"].items() if k in ENV_TO_KEY}
    settings = load_settings(environ=environ, cwd=tmp_path)
    assert settings.rate_limit == float(configmap["data"]["ETL_RATE_LIMIT"])


# --- Kubernetes ------------------------------------------------------------------------------------


# backoffLimitPerIndex and podFailurePolicy are GA in 1.33: the oldest version the file supports.
MIN_KUBERNETES = "1.33.0"


def test_every_kubernetes_document_matches_the_api_schema_strictly():
    # Strict: a misspelt field (timeZon) is an error here, where the API server would drop it.
    validator = pytest.importorskip("kubernetes_validate")
    from jsonschema import ValidationError

    for doc in k8s_documents():
        try:
            validator.validate(doc, MIN_KUBERNETES, strict=True)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path)
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {where}: {exc.message}")


def test_cronjob_runs_daily_in_utc_never_overlapping():
    spec = cronjob()["spec"]
    minute, hour, dom, month, dow = spec["schedule"].split()
    assert (dom, month, dow) == ("*", "*", "*") and minute.isdigit() and hour.isdigit()
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"


def test_job_is_indexed_with_one_pod_per_shard():
    job = job_spec()
    [main] = pod_spec()["containers"]
    shards = int(option_value(main["args"], "--shards"))
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"] == shards
    # The index must come from Kubernetes, not be pinned in the arguments.
    assert "--shard-index" not in main["args"]
    assert "JOB_COMPLETION_INDEX" in dict(SCHEDULER_INDEX_VARIABLES)


def test_failed_shards_are_retried_per_index_and_config_errors_fail_fast():
    job = job_spec()
    assert job["backoffLimitPerIndex"] == 2
    assert 1 <= job["maxFailedIndexes"] <= job["completions"]
    assert pod_spec()["restartPolicy"] == "Never"  # backoffLimitPerIndex requires it
    rules = job["podFailurePolicy"]["rules"]
    assert {rule["action"] for rule in rules} <= {"FailJob", "FailIndex", "Ignore", "Count"}
    fail_job = [r for r in rules if r["action"] == "FailJob"]
    assert fail_job and fail_job[0]["onExitCodes"] == {"operator": "In", "values": [2]}
    assert any(r.get("onPodConditions") == [{"type": "DisruptionTarget", "status": "True"}] for r in rules if r["action"] == "Ignore")


def test_no_pod_starts_after_the_utc_day_of_its_schedule():
    spec = cronjob()["spec"]
    minute, hour = (int(x) for x in spec["schedule"].split()[:2])
    start = hour * 3600 + minute * 60
    job = job_spec()
    assert start + job["activeDeadlineSeconds"] < 24 * 3600
    assert start + spec["startingDeadlineSeconds"] + 3600 < 24 * 3600
    assert job["ttlSecondsAfterFinished"] > 0


def test_every_container_has_requests_and_limits_and_runs_as_the_image_user():
    for container in pod_containers():
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
        assert "memory" in resources["limits"], container["name"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    context = pod_spec()["securityContext"]
    assert context["runAsNonRoot"] is True
    uid = re.search(r"useradd .*--uid (\d+)", DOCKERFILE.read_text()).group(1)
    assert context["runAsUser"] == int(uid)


def test_grace_period_covers_the_workers_graceful_stop():
    assert pod_spec()["terminationGracePeriodSeconds"] >= STOP_GRACE_SECONDS + 30


def test_database_url_comes_from_a_secret_and_settings_from_the_configmap():
    [configmap] = k8s_kind("ConfigMap")
    assert not k8s_kind("Secret"), "the Secret is created by kubectl, never committed"
    for container in pod_containers():
        env = {e["name"]: e for e in container["env"]}
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_URL"
        assert "value" not in env["DATABASE_URL"]
        refs = [e["configMapRef"]["name"] for e in container["envFrom"]]
        assert refs == [configmap["metadata"]["name"]]


def test_rate_limit_times_pods_fits_one_ip_budget():
    # The worst case the comment describes: every pod behind one egress IP.
    [configmap] = k8s_kind("ConfigMap")
    rate = float(configmap["data"]["ETL_RATE_LIMIT"])
    assert 0 < rate * job_spec()["parallelism"] <= REQUESTS_PER_IP
    assert "per IP" in CRONJOB.read_text()


def test_schema_is_applied_before_the_run_in_each_pod():
    [init] = pod_spec()["initContainers"]
    [main] = pod_spec()["containers"]
    assert init["args"] == ["schema", "apply"]
    assert init["image"] == main["image"]
    assert main["args"][0] == "run"


# --- systemd ---------------------------------------------------------------------------------------


def test_service_is_a_hardened_oneshot_applying_the_schema_first():
    service = unit(SERVICE)["Service"]
    assert service["Type"] == "oneshot"
    assert unit_values(SERVICE, "ExecStartPre") == [f"{INSTALL_DIR}/bin/etl schema apply"]
    assert unit_values(SERVICE, "ExecStart") == [f"{INSTALL_DIR}/bin/etl run"]
    assert service["User"] and service["User"] != "root"
    assert service["EnvironmentFile"].lstrip("-").startswith("/etc/")
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert "PrivateDevices" not in service  # it would hide the shared rate limiter in /dev/shm


def test_service_can_write_its_data_dir_and_nothing_else_by_accident():
    service = unit(SERVICE)["Service"]
    writable = [p.lstrip("-") for value in unit_values(SERVICE, "ReadWritePaths") for p in value.split()]
    data_dir = dict(a.split("=", 1) for v in unit_values(SERVICE, "Environment") for a in shlex.split(v))["ETL_DATA_DIR"]
    assert any(data_dir == p or data_dir.startswith(p + "/") for p in writable)
    assert service["WorkingDirectory"] in writable
    assert all(p.startswith("/var/lib/") for p in writable)


def test_service_stop_matches_the_graceful_stop():
    service = unit(SERVICE)["Service"]
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed"  # SIGTERM to the parent, which stops its workers
    assert seconds(service["TimeoutStopSec"]) >= STOP_GRACE_SECONDS + 30
    assert 3600 <= seconds(service["TimeoutStartSec"]) < 24 * 3600


def test_service_retries_failures_but_not_configuration_errors():
    parser = unit(SERVICE)
    service = parser["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"].split() == ["2"]
    attempts = int(parser["Unit"]["StartLimitBurst"])
    assert attempts * seconds(service["RestartSec"]) <= seconds(parser["Unit"]["StartLimitIntervalSec"])


def test_timer_runs_daily_catching_up_missed_runs():
    parser = unit(TIMER)
    timer = parser["Timer"]
    assert re.fullmatch(r"\*-\*-\* \d\d:\d\d:\d\d UTC", timer["OnCalendar"])
    assert timer["Persistent"] == "true"
    assert 0 < seconds(timer["RandomizedDelaySec"]) <= 3600
    assert timer["Unit"] == SERVICE.name
    assert parser["Install"]["WantedBy"] == "timers.target"


# --- Docker ----------------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_image_running_etl():
    instructions = dockerfile_instructions()
    words = [word for word, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    user = [rest for word, rest in instructions if word == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert words.index("USER") < words.index("ENTRYPOINT")
    assert docker_exec_form("ENTRYPOINT") == ["etl"]
    assert docker_exec_form("CMD") == ["run"]
    installs = [rest for word, rest in instructions if word == "RUN" and "pip install" in rest]
    assert installs and not any("[" in rest for rest in installs), "no extras (tests, embedded) in the image"


def test_dockerfile_copies_exist_and_are_not_ignored():
    ignored = [line for line in DOCKERIGNORE.read_text().splitlines() if line and not line.startswith("#")]
    assert {".git", ".venv", ".etl", ".env"} <= set(ignored)
    for word, rest in dockerfile_instructions():
        if word != "COPY":
            continue
        *sources, _dest = rest.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert source not in ignored and not any(source.startswith(i.rstrip("/") + "/") for i in ignored)


def test_the_files_the_image_copies_are_enough_to_load_settings_and_sql(tmp_path):
    """Rebuild the image's /opt/dopplersky-workers from its COPY lines and use it from elsewhere."""
    root = tmp_path / "opt"
    root.mkdir()
    for word, rest in dockerfile_instructions():
        if word != "COPY":
            continue
        *sources, dest = rest.split()
        for source in sources:
            target = root / dest if not dest.endswith("/") else root / dest / Path(source).name
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / source).is_dir():
                shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(REPO / source, target)
    code = (
        "import sys, pathlib, etl.config, etl.sqlfiles\n"
        "assert etl.config.PROJECT_ROOT == pathlib.Path(sys.argv[1])\n"
        "etl.config.load_settings(environ={})\n"
        "for d in ('etl', 'ops'): etl.sqlfiles.queries(d)\n"
        "from etl import migrate; assert migrate.discover()\n"
        "print('ok')\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ENV_TO_KEY and k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(root)], cwd=home, env={**env, "PYTHONPATH": str(root)}, capture_output=True, text=True
    )
    assert result.stdout == "ok\n", result.stderr
