"""`tokenpools keys hash`: turn an inference key into the salted hash configs carry."""

from __future__ import annotations

import os
import sys

import typer

from tokenpools.keys import SALT_ENV, hash_key, key_salt

app = typer.Typer(help="Inference key hashing.", no_args_is_help=True)


@app.command("hash")
def hash_(
    key: str = typer.Argument(None, help="The key; omit to read one key per line from stdin."),
) -> None:
    """Print `hs256:<hex>` for each key, salted with $TOKENPOOLS_KEY_SALT."""
    if SALT_ENV not in os.environ:
        typer.echo(f"warning: {SALT_ENV} is not set; using the public development salt", err=True)
    salt = key_salt()
    keys = [key] if key else [line.strip() for line in sys.stdin if line.strip()]
    if not keys:
        typer.echo("no key given", err=True)
        raise typer.Exit(2)
    for k in keys:
        typer.echo(hash_key(k, salt))
