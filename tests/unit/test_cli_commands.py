"""Issue #19 (tests): every command answers ``--help`` without a traceback, and the README's
command table and the CLI name the same commands and options."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tdauto import cli

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command under ``group``, groups included."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"tdauto {' '.join(path)} lists {name!r} but has none"
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The command ``tdauto WORDS`` names, and the words after its name."""
    command: click.Command = cli.main
    while words and isinstance(command, click.Group):
        sub = command.get_command(click.Context(command), words[0])
        if sub is None:
            break
        command, words = sub, words[1:]
    return command, words


def readme_rows() -> list[str]:
    """The first cells of the table under "## Running it"."""
    part = README.split("## Running it", 1)[1].split("\n## ", 1)[0]
    return [line.split(" | ", 1)[0] for line in part.splitlines() if line.startswith("| `")]


def readme_commands() -> list[tuple[str, list[str]]]:
    """Each command a README row names, as (how the row writes it, its words): a row's later
    spans (`` `tdauto task list` / `show NAME` ``) are commands of the first one's group."""
    found = []
    for row in readme_rows():
        group: list[str] = []
        for span in re.findall(r"`([^`]+)`", row):
            words = span.replace("\\|", "|").split()
            if words[0] == "tdauto":
                words = words[1:]
                group = command_path(words)[:-1]
            else:
                words = [*group, *words]
            found.append((span, words))
    return found


def command_path(words: list[str]) -> list[str]:
    """The words of ``words`` that name the command (``task list`` of ``task list --json``)."""
    _, rest = resolve(list(words))
    return words[: len(words) - len(rest)]


def test_every_command_answers_help_without_a_traceback() -> None:
    paths = [(), *commands(cli.main)]
    assert len(paths) > 20  # the walk found the commands (lazy ones too)
    for path in paths:
        result = CliRunner().invoke(cli.main, [*path, "--help"], prog_name="tdauto")
        shown = " ".join(("tdauto", *path, "--help"))
        assert result.exit_code == 0, f"{shown}:\n{result.output}"
        assert result.exception is None, f"{shown}: {result.exception!r}"
        assert "Traceback" not in result.output, shown
        assert result.output.startswith("Usage: tdauto"), shown


@pytest.mark.parametrize(
    ("span", "words"), [pytest.param(*found, id=found[0]) for found in readme_commands()]
)
def test_every_command_in_the_readme_exists(span: str, words: list[str]) -> None:
    command, rest = resolve(list(words))
    assert not isinstance(command, click.Group) or rest == [] or rest[0].startswith("-"), (
        f"README `{span}`: tdauto has no command {rest[0]!r} there"
    )
    options = {name for param in command.params for name in param.opts}
    for word in rest:
        option = word.strip("[]").split("=")[0]
        if option.startswith("-"):
            assert option in options, f"README `{span}`: {option} is not an option of it"


def test_every_command_has_a_readme_row() -> None:
    named = {tuple(command_path(words)) for _, words in readme_commands()}
    missing = [
        " ".join(path)
        for path in commands(cli.main)
        if not isinstance(resolve(list(path))[0], click.Group) and path not in named
    ]
    assert not missing, f"commands without a row in the README's table: {missing}"
