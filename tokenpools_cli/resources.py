"""Files the CLI ships as package data: the example configs and the sample trace.

`deploy/examples/*.yaml` stay where operators edit them; a link to the folder
(`tokenpools_cli/examples`) makes it the package `tokenpools_cli.examples`.
The sample trace and its license and attribution live in `tokenpools_cli/traces/`.
Both are read with `importlib.resources`, from a checkout, an editable install
or a wheel alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path

EXAMPLES = "tokenpools_cli.examples"
TRACES = "tokenpools_cli.traces"
SAMPLE_TRACE = "azure_llm_2023_code_sample.csv"
"""The first 300 requests of the Azure LLM code trace 2023 (CC BY 4.0; see README.md beside it)."""


def example(name: str) -> Traversable:
    """A packaged example config, e.g. `example("overload.yaml")`."""
    return files(EXAMPLES) / name


def sample_trace() -> Traversable:
    """The packaged sample of the recorded trace; `--trace` takes the full file."""
    return files(TRACES) / SAMPLE_TRACE


@contextmanager
def given_or_packaged(given: Path | None, packaged: Traversable) -> Iterator[Path]:
    """`given` when the user named a file, else the packaged one as a real file while in use."""
    if given is not None:
        yield given
        return
    with as_file(packaged) as path:
        yield path
