"""The command line as a user meets it: help in users' words, errors as one line."""

import click
import pytest
from click.testing import CliRunner

from fedscore.cli import main
from fedscore.errors import InputError

COMMANDS = [["demo"], ["psi"], ["lookalike"], ["propensity"], ["segment"], ["horizontal", "lr"],
            ["horizontal", "kmeans"], ["keys", "init"]]


@pytest.fixture
def failing_commands():
    """Two throw-away commands: one raising a user error, one a bug."""
    @click.command("fail-user")
    def fail_user():
        raise InputError("non-numeric value 'n/a' in a numeric column", path="media.csv", column="clicks", row=7)

    @click.command("fail-bug")
    def fail_bug():
        raise KeyError("weights")

    for command in (fail_user, fail_bug):
        main.add_command(command)
    yield
    for name in ("fail-user", "fail-bug"):
        main.commands.pop(name)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_explains_every_option(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    context = click.Context(main)
    group = main
    for name in command:
        group = group.get_command(context, name)
    undocumented = [p.name for p in group.params if isinstance(p, click.Option) and not p.help]
    assert undocumented == []


def test_user_errors_are_one_line_and_debug_shows_the_traceback(failing_commands):
    result = CliRunner().invoke(main, ["fail-user"])
    assert result.exit_code == 1
    assert result.output == "error: media.csv, column 'clicks', row 7: non-numeric value 'n/a' in a numeric column\n"
    debug = CliRunner().invoke(main, ["--debug", "fail-user"])
    assert debug.exit_code == 1 and isinstance(debug.exception, InputError)


def test_a_bug_is_reported_in_one_line_as_an_internal_error(failing_commands):
    result = CliRunner().invoke(main, ["fail-bug"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith("error: internal error (KeyError: 'weights')") and "--debug" in result.output


def test_usage_errors_keep_clicks_own_message():
    result = CliRunner().invoke(main, ["psi", "--brand"])
    assert result.exit_code == 2 and "requires an argument" in result.output
