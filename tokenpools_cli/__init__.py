"""The `tokenpools` command: the composition root that wires the core to streams and connectors.

Each sub-command group lives in its own module with an `app` (typer.Typer);
`main.py` mounts them; what they orchestrate (local stack, demos) is in `local/`.
I/O libraries are imported inside commands so that `tokenpools --help` stays
fast and the core stays free of them.
"""
