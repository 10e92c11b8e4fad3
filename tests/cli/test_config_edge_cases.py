"""`tokenpools config validate` on hostile files: a clear message and exit 2, never a traceback.

Issue 11, item 6: a binary file and 5,000-deep YAML gave tracebacks (exit 1);
`tps: .inf` passed and `apply` then published `null`; `replicas: true` passed
as 1; a duplicate key silently won; a 50k-entitlement config validated but
could not be published.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenpools_cli.main import app

POOL = """\
pools:
  - name: p1
    replicas: {replicas}
    per_replica: {{tps: {tps}, kv: 10000, conc: 8}}
    target_utilization: 1.0
"""


def _validate(tmp_path: Path, content: str | bytes) -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _pool(replicas: str = "2", tps: str = "1000") -> str:
    return POOL.format(replicas=replicas, tps=tps)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (bytes(range(256)) * 4, "not UTF-8 text"),
        (b"\x00\x01\x02pools: []", "invalid YAML"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 64 levels"),
        ("a:\n" + "".join("  " * i + "- \n" for i in range(1, 200)), "nested deeper"),
        (_pool(tps=".inf"), "pools[0].per_replica.tps: Input should be a finite number"),
        (_pool(tps=".nan"), "pools[0].per_replica.tps: Input should be a finite number"),
        (_pool(replicas="true"), "pools[0].replicas: Input should be a valid integer"),
        (_pool(replicas="2.5"), "pools[0].replicas: Input should be a valid integer"),
        (_pool(tps='"1000"'), "pools[0].per_replica.tps: Input should be a valid number"),
        (
            _pool() + "controller: {lend_guarantees: 1}\n",
            "controller.lend_guarantees: Input should be a valid boolean",
        ),
        (_pool() + "pools: []\n", "line 6, column 1: invalid YAML (duplicate key 'pools')"),
        (
            "pools:\n  - name: p1\n    replicas: 2\n    replicas: 9\n",
            "line 4, column 5: invalid YAML (duplicate key 'replicas')",
        ),
    ],
    ids=[
        "binary",
        "control bytes",
        "5000 deep flow",
        "200 deep block",
        "tps .inf",
        "tps .nan",
        "replicas true",
        "replicas 2.5",
        "tps string",
        "bool as 1",
        "duplicate top key",
        "duplicate nested key",
    ],
)
def test_a_hostile_config_is_refused_with_exit_2_naming_where(
    tmp_path: Path, content: str | bytes, expected: str
) -> None:
    code, output = _validate(tmp_path, content)
    assert code == 2, output
    assert expected in " ".join(output.split()), output
    assert "Traceback" not in output


def test_a_config_too_large_for_one_record_is_refused_naming_the_limit(tmp_path: Path) -> None:
    """10,000 entitlements make a ~1.9 MB record: refused at validate time, not by the broker."""
    ents = "".join(
        f'  - {{name: tenant-{i:05d}, pool: p1, tier: spot, key_hashes: ["{i:064x}"]}}\n'
        for i in range(10_000)
    )
    code, output = _validate(tmp_path, _pool() + "entitlements:\n" + ents)
    flat = " ".join(output.split())
    assert code == 2, output
    assert "over the config topic's limit of 1,000,000 bytes (CONFIG_MAX_MESSAGE_BYTES)" in flat
    assert "pools[0]: the config record of pool 'p1'" in flat


def test_a_config_just_under_the_limit_still_validates(tmp_path: Path) -> None:
    ents = "".join(f"  - {{name: t{i}, pool: p1, tier: spot}}\n" for i in range(100))
    code, output = _validate(tmp_path, _pool() + "entitlements:\n" + ents)
    assert code == 0, output
