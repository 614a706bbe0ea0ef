"""The README's generated sections match config/default.yaml and --help (run `make docs`)."""

from __future__ import annotations

import yaml

from etl import docs
from etl.config import DEFAULT_FILE, SPECS, env_name


def test_readme_generated_sections_are_up_to_date():
    text = docs.README.read_text(encoding="utf-8")
    assert docs.render(text) == text, "README.md is out of date: run `make docs`"


def test_configuration_table_lists_every_setting_with_env_name_default_and_meaning():
    table = docs.config_table()
    values = yaml.safe_load(DEFAULT_FILE.read_text())
    rows = table.splitlines()[2:]
    assert len(rows) == len(SPECS)
    for key in SPECS:
        default = "null" if values[key] is None else str(values[key])
        (row,) = [r for r in rows if r.startswith(f"| `{key}` |")]
        assert f"| `{env_name(key)}` | `{default}` |" in row
        assert row.rstrip(" |").split("|")[-1].strip(), f"{key} has no meaning"


def test_cli_reference_holds_every_command():
    reference = docs.cli_reference()
    for command in ("run", "status", "users add", "users import", "report", "schema apply", "health", "simulate", "demo"):
        assert f"### `etl {command}`" in reference
    assert "--shard-index" in reference and "--simple-query" in reference
