"""The ``fedscore`` command line.

Each capability's command lives in its own module here and is registered on :func:`main`.
Errors a user can cause print as one line and exit with status 1; ``--debug`` shows the
traceback.
"""

import functools
import sys
from pathlib import Path

import click

from ..errors import FedscoreError
from ..kit.options import SURFACE
from ..runtime import progress


class _Group(click.Group):
    """Turn every failure into one line and a non-zero exit, unless --debug.

    A :class:`FedscoreError` is the user's to fix and says how; anything else is a bug
    of fedscore's, reported as such with its type so that it can be looked up. Click's
    own exceptions (usage errors, ``--help``, Ctrl-C) keep their behaviour.
    """

    def invoke(self, ctx):
        token = SURFACE.set("cli")  # errors name options as flags (--min-seed), not arguments
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if isinstance(exc, FedscoreError):
                click.echo(f"error: {exc}", err=True)
            else:
                first_line = (str(exc).strip().splitlines() or [""])[0]
                click.echo(f"error: internal error ({type(exc).__name__}: {first_line}); "
                           f"run again with --debug for the traceback", err=True)
            sys.exit(1)
        finally:
            SURFACE.reset(token)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback when something fails.")
@click.version_option(package_name="fedscore")
@click.pass_context
def main(ctx, debug):
    """Privacy-preserving audience scoring between a brand and a media platform.

    Each command runs every party on this machine: in this process by default
    (every message encoded, relayed and recorded as over Flower), in Flower's
    simulation with --engine simulation, or with --deployment on a real local Flower
    SuperLink with one SuperNode per party. Every run writes a ledger of each message
    that crossed a party boundary (kind and size, never values).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.with_resource(progress.on_console())


def engine_options(func):
    """Options shared by every command that runs a protocol, the parties' identities among them."""

    command = func

    @functools.wraps(command)
    def with_identities(*args, identity_keys=(), peer_fingerprints=(), parties_file=None, **kwargs):
        if not (identity_keys or peer_fingerprints or parties_file):
            return command(*args, **kwargs)
        from ..runtime.runner import identities

        with identities(identity_keys, peer_fingerprints, parties_file):
            return command(*args, **kwargs)

    func = click.option(
        "--parties-file", "parties_file", type=click.Path(dir_okay=False, path_type=Path),
        help="A JSON or TOML file mapping each party's role to its identity fingerprint, pinned at every party "
             "(the same as --peer-fingerprint for each).",
    )(with_identities)
    func = click.option(
        "--peer-fingerprint", "peer_fingerprints", multiple=True, metavar="ROLE=FINGERPRINT",
        help="Pin a party's identity fingerprint (repeat for each party): a channel key not signed by the "
             "pinned identity is refused. Given with --identity; without either, each run makes and pins "
             "its own keys.",
    )(func)
    func = click.option(
        "--identity", "identity_keys", multiple=True, metavar="ROLE=PATH",
        help="A party's identity key file, made with `fedscore identity init` (repeat for each party).",
    )(func)
    func = click.option("--overwrite", is_flag=True, help="Replace the output folder if it exists.")(func)
    func = click.option(
        "--engine", type=click.Choice(["local", "simulation", "deployment"]), default="local", show_default=True,
        help="local: every party in this process, messages encoded and relayed as over Flower (fastest); "
             "simulation: Flower's simulation runtime; deployment: a real local Flower SuperLink and one "
             "SuperNode per party, with TLS and node authentication.",
    )(func)
    func = click.option("--deployment", "deployment", is_flag=True, help="Shortcut for --engine deployment.")(func)
    return func


def run_options(func):
    """``--timeout`` and ``--resume``: what happens when a party fails, and how to go on after it."""
    func = click.option(
        "--resume", is_flag=True,
        help="Go on from the rounds a failed attempt of this same command completed (kept in OUT.checkpoint) "
             "instead of starting again.",
    )(func)
    return click.option(
        "--timeout", type=click.FloatRange(min=1), default=600.0, show_default=True,
        help="Seconds to wait for a party's answer; a party that does not answer in time (or whose "
             "process died) stops the run with an error naming it, and nothing is written.",
    )(func)


def label_dp_switch(func):
    """``--no-label-dp``: the explicit opt-out of a job's label DP (``--label-dp-epsilon inf``)."""

    command = func

    @functools.wraps(command)
    def switched(*args, no_label_dp=False, **kwargs):
        if no_label_dp:
            given = click.get_current_context().get_parameter_source("label_dp_epsilon")
            if given == click.core.ParameterSource.COMMANDLINE:
                raise click.UsageError("--no-label-dp and --label-dp-epsilon contradict each other: give one")
            kwargs["label_dp_epsilon"] = "inf"
        return command(*args, **kwargs)

    return click.option(
        "--no-label-dp", "no_label_dp", is_flag=True,
        help="Turn label DP off (the same as --label-dp-epsilon inf). The media may then single out the label "
             "of a user alone in a category or with an outlying value from what it receives: the report says so.",
    )(switched)


def echo_label_dp(report, what):
    """The run's label DP in one line: its epsilon, or in words what the media may learn without it."""
    dp = report.get("label_dp")
    if dp:
        click.echo(f"label DP: epsilon {dp['epsilon']:g}, delta {dp['delta']:g}, noise std {dp['noise_std']:.3g} on "
                   "the label aggregate")
    else:
        click.secho(f"label DP: off (opted out): the media may read {what} of a user who stands out in its "
                    "encoded columns (a rare category or an outlying value) from what it received", fg="yellow")


def chosen_engine(engine, deployment):
    return "deployment" if deployment else engine


def interval_text(interval):
    """``"(95 % 0.741-0.787)"`` for a reported interval, or an empty string when there is none."""
    if not interval or any(value is None or value != value for value in interval):
        return ""
    return f"(95 % {interval[0]:.3f}-{interval[1]:.3f})"


# Importing a command's module registers it on ``main``.
from . import demo, horizontal, horizontal_lr, identity, keys, lookalike, propensity, psi, score, segment  # noqa: E402,F401
