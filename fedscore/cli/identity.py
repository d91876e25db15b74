"""``fedscore identity``: a party's long-term identity key, and the fingerprint its peers pin."""

from pathlib import Path

import click

from . import main


@main.group()
def identity():
    """Make and show the identity key a party signs its channel keys with.

    Each party makes one key, once, and tells the other parties its fingerprint out
    of band (in person, by phone, in a signed e-mail: not through the coordinator).
    Each party pins the others' fingerprints (--peer-fingerprint ROLE=FINGERPRINT or
    --parties-file FILE; node config peer-fingerprints or parties-file in a deployment) and
    refuses a channel key that is not signed by the identity pinned for its sender.
    """


@identity.command("init")
@click.option("--out", "path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The identity key file to write (owner-only, mode 0600; a new folder is made 0700). "
                   "An existing file is never replaced.")
def init(path):
    """Make a new identity key and print its fingerprint."""
    from ..kit.identity import Identity, write_identity

    key = Identity.generate()
    write_identity(key, path)
    click.echo(key.fingerprint)
    click.echo(f"identity key written to {path} (owner-only; keep it secret). Give the fingerprint above to "
               f"the other parties: they pin it as --peer-fingerprint ROLE={key.fingerprint}", err=True)


@identity.command("show")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def show(path):
    """Print the fingerprint of the identity key in PATH."""
    from ..kit.identity import load_identity

    click.echo(load_identity(path).fingerprint)
