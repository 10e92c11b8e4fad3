"""What the commands run on this machine: the process supervisor, the demos, the servers' loop.

Command modules in `tokenpools_cli/commands/` parse options, call one function
from here and map its errors to exit codes; the orchestration itself lives
here so that tests and benchmarks can call it without going through typer.
"""
