"""The `tokenpools` sub-commands, one module per group; `tokenpools_cli.main` mounts them."""
