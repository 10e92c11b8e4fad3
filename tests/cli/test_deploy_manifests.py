"""Deployment files stay in step with the code: every command they run exists, configs validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.helpers.paths import REPO
from tokenpools.config_file import load_config
from tokenpools_cli.main import app

K8S = REPO / "deploy" / "k8s"


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _tokenpools_commands() -> set[tuple[str, ...]]:
    """Each `tokenpools <group> <command>` that a manifest or the compose file runs."""
    commands = set()
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    argvs = [svc.get("command") for svc in compose["services"].values()]
    for path in K8S.rglob("*.yaml"):
        for doc in _documents(path):
            if doc.get("kind") == "Deployment":
                containers = doc["spec"]["template"]["spec"]["containers"]
                argvs.extend(c.get("args") for c in containers)
    for argv in argvs:
        if argv and argv[0] == "tokenpools":
            words = [w for w in argv[1:] if not w.startswith("-")]
            commands.add(tuple(words[:2]))
    return commands


@pytest.mark.parametrize("words", sorted(_tokenpools_commands()), ids=" ".join)
def test_every_command_the_deployments_run_exists(words: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*words, "--help"])
    assert result.exit_code == 0, result.output


def test_every_kustomize_resource_exists() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for resource in spec.get("resources", []):
            assert (kustomization.parent / resource).exists(), (kustomization, resource)
        for generator in spec.get("configMapGenerator", []):
            for file in generator.get("files", []):
                assert (kustomization.parent / file.split("=")[-1]).exists(), file


def test_the_config_mounted_into_sidecars_is_valid() -> None:
    assert load_config(K8S / "base" / "platform.yaml").entitlements
