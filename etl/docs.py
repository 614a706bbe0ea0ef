"""The README's generated sections: the configuration table and the CLI reference.

`make docs` rewrites them between their markers; a test fails when the README is out of date,
so the documentation can never drift from config/default.yaml or from `--help`.
"""

from __future__ import annotations

import re
import sys

import click
import yaml

from etl.config import DEFAULT_FILE, PROJECT_ROOT, env_name

README = PROJECT_ROOT / "README.md"
# Help text is rendered at a fixed width so the README does not depend on the terminal.
HELP_WIDTH = 100


def _defaults_with_comments() -> list[tuple[str, object, str, str]]:
    """(key, default, comment, section) for every line of config/default.yaml, in file order."""
    values = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
    rows = []
    section = ""
    for line in DEFAULT_FILE.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^# --- (.+?) -+$", line)
        if heading:
            section = heading.group(1)
            continue
        match = re.match(r"^([a-z_]+):\s.*?\s#\s(.*)$", line)
        if match:
            key = match.group(1)
            rows.append((key, values[key], match.group(2).strip(), section))
    return rows


def config_table() -> str:
    """Markdown table: YAML key, environment variable, default, meaning; grouped as the file is."""
    lines = ["| YAML key | environment variable | default | meaning |", "| --- | --- | --- | --- |"]
    for key, default, comment, section in _defaults_with_comments():
        shown = "null" if default is None else str(default)
        lines.append(f"| `{key}` | `{env_name(key)}` | `{shown}` | {section}: {comment.replace('|', '/')} |")
    return "\n".join(lines)


def _commands(group: click.Group, ctx: click.Context, prefix: list[str]):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        path = [*prefix, name]
        yield path, command
        if isinstance(command, click.Group):
            sub_ctx = click.Context(command, info_name=name, parent=ctx)
            yield from _commands(command, sub_ctx, path)


def cli_reference() -> str:
    """Every command's --help, as the terminal shows it, in fenced blocks."""
    from etl.cli import cli

    # The group's context settings (its -h/--help) apply here as they do at the command line.
    settings = {**cli.context_settings, "terminal_width": HELP_WIDTH, "max_content_width": HELP_WIDTH}
    root = click.Context(cli, info_name="etl", **settings)
    blocks = [f"### `etl`\n\n```\n{cli.get_help(root)}\n```"]
    for path, command in _commands(cli, root, []):
        parent = root
        for name in path[:-1]:
            parent = click.Context(parent.command.get_command(parent, name), info_name=name, parent=parent)
        ctx = click.Context(command, info_name=path[-1], parent=parent, terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH)
        blocks.append(f"### `etl {' '.join(path)}`\n\n```\n{command.get_help(ctx)}\n```")
    return "\n\n".join(blocks)


SECTIONS = {"config-table": config_table, "cli-reference": cli_reference}


def render(text: str) -> str:
    """The README text with every generated section brought up to date."""
    for name, build in SECTIONS.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README.md lacks the markers of the {name} section")
        text = pattern.sub(lambda m, b=build: m.group(1) + b() + "\n" + m.group(2), text)
    return text


def main() -> None:
    """`python -m etl.docs`: rewrite the README's generated sections in place."""
    text = README.read_text(encoding="utf-8")
    new = render(text)
    if new != text:
        README.write_text(new, encoding="utf-8")
        print(f"updated {README}")
    else:
        print(f"{README} is up to date")
    sys.exit(0)


if __name__ == "__main__":
    main()
