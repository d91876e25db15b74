"""One options schema per job: validation, the command line and the library signature from it."""

import inspect
from dataclasses import dataclass

import click
import pytest
from click.testing import CliRunner

from fedscore.errors import InputError
from fedscore.kit.options import SURFACE, Options, argument, click_options, option, with_options


@dataclass(frozen=True)
class Toy(Options):
    job = "toy"

    id_column: str = option(None, "The ID column.", required=True, local=True)
    backend: str = option("ckks", "The scheme.", choices=("ckks", "paillier"))
    rounds: int = option(10, "Rounds.", low=1)
    epsilon: float | None = option(None, "Privacy budget.", low=0, low_open=True)
    sizes: tuple[str, ...] = option(("1%", "5%"), "Sizes.")
    exclude: tuple[str, ...] = option((), "Columns left out.", multiple=True)
    seeded: bool = option(True, "Exclude seeds.", cli="--seeded/--unseeded")
    exact: bool = option(False, "Exact scores.")
    secret: int | None = option(None, "Tests only.", hidden=True)

    def check(self):
        if self.epsilon is not None and self.seeded:
            raise InputError(f"{argument('epsilon')} needs {argument('seeded', False)}")


def test_defaults_coercion_and_round_trip():
    toy = Toy.from_dict({"id_column": "uid", "rounds": "3", "epsilon": 2, "seeded": "false", "sizes": "1%, 2%"})
    assert (toy.rounds, toy.epsilon, toy.seeded, toy.sizes, toy.backend) == (3, 2.0, False, ("1%", "2%"), "ckks")
    assert Toy.from_dict(toy.to_dict()) == toy
    assert toy.replace(rounds=4).rounds == 4


@pytest.mark.parametrize("values, message", [
    ({"id_column": "u", "colour": 1}, r"unknown toy option\(s\): colour="),
    ({}, "id_column= is required"),
    ({"id_column": "u", "rounds": 0}, "rounds= must be at least 1, not 0"),
    ({"id_column": "u", "rounds": 1.5}, "rounds= must be a whole number"),
    ({"id_column": "u", "rounds": True}, "rounds= must be a whole number"),
    ({"id_column": "u", "epsilon": 0}, "epsilon= must be greater than 0"),
    ({"id_column": "u", "epsilon": "nan"}, "epsilon= must be a number, not NaN"),
    ({"id_column": "u", "backend": "rsa"}, "backend= must be one of ckks, paillier, not 'rsa'"),
    ({"id_column": "u", "seeded": "maybe"}, "seeded= must be true or false"),
    ({"id_column": "u", "epsilon": 1.0}, "epsilon= needs seeded=False"),
])
def test_bad_values_name_the_argument(values, message):
    with pytest.raises(InputError, match=message):
        Toy.from_dict(values)


def test_a_party_setting_wins_only_for_local_options():
    toy = Toy.from_dict({"id_column": "uid"})
    assert toy.local("id_column", {"id_column": "email"}) == "email"
    assert toy.local("id_column", {}) == "uid"
    assert toy.local("rounds", {"rounds": 99}) == 10  # not the party's to change


def test_the_command_line_is_derived_from_the_schema():
    @click.command()
    @click_options(Toy)
    def command(**values):
        click.echo(repr(Toy.from_dict(values)))

    names = {p.name for p in command.params}
    assert names == {"id_column", "backend", "rounds", "epsilon", "sizes", "exclude", "seeded", "exact"}
    flags = {o for p in command.params for o in p.opts + p.secondary_opts}
    assert {"--id-column", "--seeded", "--unseeded", "--exact", "--exclude"} <= flags
    result = CliRunner().invoke(command, ["--id-column", "uid", "--rounds", "2", "--exclude", "a", "--exclude", "b",
                                          "--unseeded", "--epsilon", "3"])
    assert result.exit_code == 0, result.output
    assert "rounds=2" in result.output and "exclude=('a', 'b')" in result.output and "seeded=False" in result.output
    assert "The scheme." in CliRunner().invoke(command, ["--help"]).output


def test_errors_name_flags_on_the_command_line():
    token = SURFACE.set("cli")
    try:
        with pytest.raises(InputError, match="--rounds must be at least 1"):
            Toy.from_dict({"id_column": "u", "rounds": 0})
        assert argument("overwrite", True) == "--overwrite"
    finally:
        SURFACE.reset(token)
    assert argument("overwrite", True) == "overwrite=True"


def test_the_library_signature_is_derived_from_the_schema():
    @with_options(Toy)
    def run(table, *, out, options):
        """Run the toy."""
        return table, out, options

    parameters = inspect.signature(run).parameters
    assert list(parameters)[:2] == ["table", "out"] and parameters["rounds"].default == 10
    assert "rounds : default 10" in run.__doc__
    _, out, options = run("t.csv", out="o", id_column="uid", rounds=2)
    assert out == "o" and options.rounds == 2
    with pytest.raises(InputError, match="unknown toy option"):
        run("t.csv", out="o", id_column="uid", colour="red")
