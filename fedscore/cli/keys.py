"""``fedscore keys``: the key ceremony of horizontal protocols."""

import click

from . import main


@main.group()
def keys():
    """Create and manage the keys horizontal protocols share."""


@keys.command("init")
@click.option("--parties", type=click.IntRange(min=2), required=True,
              help="Number of parties that will train together.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for the key files (created with mode 0700; existing key files are never replaced).")
def init(parties, out_dir):
    """Make one CKKS key for N parties and the coordinator's public context.

    Writes party-1.secret ... party-N.secret (the same secret key, mode 0600, one file to
    hand to each party), coordinator.public (for the coordinator: it can add ciphertexts
    but not decrypt) and keys.json (public: parameters and key fingerprint). Whoever
    runs this sees the secret key: run it at one of the parties and give each party its
    file over a confidential channel, and the coordinator only coordinator.public.
    """
    from ..keys import MANIFEST_FILE, PUBLIC_FILE, init_keys

    manifest = init_keys(out_dir, parties)
    click.echo(f"key {manifest['fingerprint'][:16]}... ({manifest['scheme']}, N={manifest['poly_modulus_degree']}) "
               f"for {parties} parties in {out_dir}:")
    for name in manifest["parties"]:
        click.echo(f"  {name}  secret, mode 0600: give to one party")
    click.echo(f"  {PUBLIC_FILE}  public context: give to the coordinator")
    click.echo(f"  {MANIFEST_FILE}  public manifest")
