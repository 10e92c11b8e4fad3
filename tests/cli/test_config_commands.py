"""Config validation: every refusal names the field at fault; the examples are valid."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers.paths import EXAMPLES
from tokenpools.config_file import ConfigError, load_config, parse_config
from tokenpools_cli.main import app

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))

POOL = """
pools:
  - name: p1
    replicas: 2
    per_replica: {tps: 1000, kv: 10000, conc: 8}
    target_utilization: 1.0
"""


def _problems(yaml_text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(yaml_text))
    return info.value.problems


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_shipped_examples_are_valid(path: Path) -> None:
    assert load_config(path).pools


@pytest.mark.parametrize(
    ("entitlements", "expected"),
    [
        ("- {name: a, pool: nope, tier: elastic}", "entitlements[0].pool: unknown pool 'nope'"),
        (
            "- {name: a, pool: p1, tier: guaranteed, guarantee: {conc: 4}, burst: {conc: 2}}",
            "entitlements[0]: burst.conc (2) is below guarantee.conc (4)",
        ),
        (
            "- {name: a, pool: p1, tier: guaranteed, guarantee: {conc: 10}}\n"
            "- {name: b, pool: p1, tier: guaranteed, guarantee: {conc: 7}}",
            "pools[0].per_replica.conc: guarantees in pool 'p1' sum to 17 conc, over the "
            "committed capacity 16",
        ),
        (
            "- {name: a, pool: p1, tier: elastic, key_hashes: ['hs256:aa']}\n"
            "- {name: b, pool: p1, tier: elastic, key_hashes: ['hs256:aa']}",
            "entitlements[1].key_hashes[0]: duplicate key, already used by entitlement 'a'",
        ),
        (
            "- {name: a, pool: p1, tier: elastic, guarantee: {tps: -1}}",
            "entitlements[0].guarantee.tps: Input should be greater than or equal to 0",
        ),
        (
            "- {name: a, pool: p1, tier: spot, guarantee: {conc: 1}}",
            "entitlements[0]: spot entitlements have no guarantee",
        ),
        ("- {name: a, pool: p1, tier: gold}", "entitlements[0].tier: Input should be"),
        ("- {name: a, pool: p1, tier: spot, wieght: 2}", "entitlements[0].wieght: Extra inputs"),
        (
            "- {name: a, pool: p1, tier: elastic}\n- {name: a, pool: p1, tier: spot}",
            "entitlements[1].name: duplicate entitlement name 'a'",
        ),
    ],
)
def test_invalid_configs_are_refused_with_the_field_named(entitlements: str, expected: str) -> None:
    text = POOL + "entitlements:\n" + textwrap.indent(entitlements, "  ")
    problems = _problems(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_yaml_syntax_errors_report_line_and_column() -> None:
    (problem,) = _problems("pools: [\n  - name: x\n")
    assert problem.startswith("line ")


def test_validate_command_exits_2_and_prints_each_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(POOL + "entitlements:\n  - {name: a, pool: nope, tier: elastic}\n")
    result = CliRunner().invoke(app, ["config", "validate", str(bad)])
    assert result.exit_code == 2
    assert "entitlements[0].pool: unknown pool 'nope'" in result.output


def test_validate_command_accepts_an_example() -> None:
    result = CliRunner().invoke(app, ["config", "validate", str(EXAMPLE_FILES[0])])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_missing_file_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["config", "validate", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert "cannot read" in result.output
