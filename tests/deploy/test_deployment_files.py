"""The deployment files run: every command line in docker-compose.yml and deploy/k8s is parsed
by the real CLI (the parser of the click that typer ships and runs: the options exist and
their values convert; nothing is executed), every environment variable they set is one the
code reads, and what a Service targets is not bound to loopback.

The parser sees each container's own environment (literals and ConfigMap literals, with
placeholders for Secret and downward-API values), as the process would at start.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from connectors.kafka.settings import KafkaSettings
from tests.helpers.paths import REPO
from tokenpools_cli.main import app

K8S = REPO / "deploy" / "k8s"
COMPOSE = REPO / "docker-compose.yml"
CODE = ("tokenpools", "tokenpools_cli", "connectors", "streams")
PLACEHOLDER = "from-a-secret"
REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
TOKENPOOLS_IMAGES = {"tokenpools", "tokenpools:dev"}


@dataclass
class Container:
    """One process a deployment file starts: where, its argv and the environment it gets."""

    where: str
    image: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # set by name (not from a ConfigMap), so `$(NAME)` in argv or env may refer to them
    named: set[str] = field(default_factory=set)
    # the values as written, before `$(VAR)` expansion
    written: list[str] = field(default_factory=list)
    pod_labels: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)

    @property
    def is_tokenpools(self) -> bool:
        return self.image in TOKENPOOLS_IMAGES or (self.argv[:1] == ["tokenpools"])

    def expanded(self) -> list[str]:
        """argv with Kubernetes' `$(VAR)` references replaced by the variable's value."""
        return [REFERENCE.sub(lambda m: self.env.get(m[1], m[0]), word) for word in self.argv]


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _configmap_literals() -> dict[str, dict[str, str]]:
    """ConfigMaps made by kustomize's configMapGenerator literals, by name."""
    maps: dict[str, dict[str, str]] = {}
    for kustomization in K8S.rglob("kustomization.yaml"):
        for generator in yaml.safe_load(kustomization.read_text()).get("configMapGenerator", []):
            literals = dict(item.split("=", 1) for item in generator.get("literals", []))
            maps.setdefault(generator["name"], {}).update(literals)
    return maps


def _k8s_containers() -> Iterator[Container]:
    maps = _configmap_literals()
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or "crds" in path.parts:
            continue
        for doc in _documents(path):
            if doc.get("kind") not in POD_KINDS:
                continue
            pod = doc["spec"]["template"]
            for c in pod["spec"]["containers"]:
                env: dict[str, str] = {}
                for source in c.get("envFrom", []):
                    env.update(maps.get(source.get("configMapRef", {}).get("name"), {}))
                named, written = set(), []
                for var in c.get("env", []):
                    named.add(var["name"])
                    written.append(var.get("value", ""))
                    value = var.get("value", PLACEHOLDER)
                    env[var["name"]] = REFERENCE.sub(lambda m, e=env: e.get(m[1], m[0]), value)
                yield Container(
                    where=f"{path.relative_to(REPO)}:{doc['metadata']['name']}/{c['name']}",
                    image=c["image"],
                    argv=[*c.get("command", []), *c.get("args", [])],
                    env=env,
                    named=named,
                    written=written,
                    pod_labels=pod.get("metadata", {}).get("labels", {}),
                    ports=[p["containerPort"] for p in c.get("ports", [])],
                )


def _compose_containers() -> Iterator[Container]:
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, service in compose["services"].items():
        env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        env = {k: PLACEHOLDER if v.startswith("${") else v for k, v in env.items()}
        yield Container(
            where=f"docker-compose.yml:{name}",
            image=service.get("image", ""),
            argv=list(service.get("command") or []),
            env=env,
            named=set(env),
        )


def _containers() -> list[Container]:
    return [*_compose_containers(), *_k8s_containers()]


def _tokenpools_containers() -> list[Container]:
    return [c for c in _containers() if c.is_tokenpools and c.argv]


def _resolve(argv: list[str]) -> tuple[str, Any, list[str]]:
    """The click command an argv names, its path, and the arguments left for it."""
    assert argv[0] == "tokenpools", argv
    command = typer.main.get_command(app)
    words, path = list(argv[1:]), ["tokenpools"]
    while hasattr(command, "commands"):  # a group
        assert words, f"{' '.join(argv)}: names a group, not a command"
        name = words.pop(0)
        sub = command.commands.get(name)
        assert sub is not None, f"{' '.join(argv)}: no command {name!r} in {' '.join(path)}"
        command, path = sub, [*path, name]
    return " ".join(path), command, words


def _read_by_the_code() -> set[str]:
    """Every environment variable the code reads: options' `envvar`s, the settings model's
    names, and the upper-case string constants of modules that touch `os.environ`."""
    names: set[str] = set()

    def walk(command: Any) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            names.update([envvar] if isinstance(envvar, str) else envvar or [])
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    for field_info in KafkaSettings.model_fields.values():
        alias = field_info.validation_alias
        names.update(str(choice) for choice in getattr(alias, "choices", []))
    for package in CODE:
        for source in (REPO / package).rglob("*.py"):
            text = source.read_text()
            if "environ" not in text and "getenv" not in text:
                continue
            for node in ast.walk(ast.parse(text)):
                constant = isinstance(node, ast.Constant) and isinstance(node.value, str)
                if constant and re.fullmatch(r"[A-Z][A-Z0-9_]{3,}", node.value):
                    names.add(node.value)
    return names


@pytest.fixture
def container_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a parse with exactly a container's environment for the tokenpools variables."""
    import os

    def use(env: dict[str, str]) -> None:
        for name in list(os.environ):
            if name.startswith("TOKENPOOLS_") or name.endswith("_BOOTSTRAP"):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return use


@pytest.mark.parametrize("container", _tokenpools_containers(), ids=lambda c: c.where)
def test_every_command_line_parses_with_the_real_cli(container: Container, container_env: Any):
    container_env(container.env)
    path, command, args = _resolve(container.expanded())
    try:
        context = command.make_context(path, args)
    except Exception as exc:  # typer's own click's UsageError / BadParameter
        message = exc.format_message() if hasattr(exc, "format_message") else repr(exc)
        pytest.fail(f"{container.where}: {path} rejects {args}: {message}")
    for name, value in context.params.items():
        given = context.get_parameter_source(name).name == "COMMANDLINE"
        relative = isinstance(value, Path) and not value.is_absolute()
        if given and relative and container.where.startswith("docker-compose"):
            # the image is the repository (Dockerfile: COPY deploy ...), cwd /app
            assert (REPO / value).exists(), f"{container.where}: {value} is not in the image"


@pytest.mark.parametrize("container", _tokenpools_containers(), ids=lambda c: c.where)
def test_every_container_gets_valid_kafka_settings(container: Container) -> None:
    KafkaSettings.from_env(container.env)


@pytest.mark.parametrize("container", _tokenpools_containers(), ids=lambda c: c.where)
def test_every_variable_set_is_read_by_the_code(container: Container) -> None:
    read = _read_by_the_code()
    referenced = {
        m for word in [*container.argv, *container.written] for m in REFERENCE.findall(word)
    }
    # a variable set by name only to be expanded into argv or another value is used, too
    referenced &= container.named
    unread = sorted(set(container.env) - read - referenced)
    assert not unread, f"{container.where} sets {unread}, which nothing reads"


def _loopback_host(argv: list[str]) -> str | None:
    for flag, value in itertools.pairwise(argv):
        if flag in ("--host", "--bind") and value in ("127.0.0.1", "localhost", "::1"):
            return value
    return None


def test_what_a_service_targets_listens_beyond_loopback() -> None:
    containers = list(_k8s_containers())
    targeted = 0
    for path in K8S.rglob("*.yaml"):
        for doc in _documents(path):
            if doc.get("kind") != "Service":
                continue
            selector = doc["spec"]["selector"]
            for port in doc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                for c in containers:
                    selected = selector.items() <= c.pod_labels.items()
                    argv = c.expanded()
                    listens = target in c.ports or str(target) in argv
                    if selected and listens:
                        targeted += 1
                        host = _loopback_host(argv)
                        assert host is None, f"{c.where} binds {host}; Service {port} can't reach"
    assert targeted, "no Service targets a container: the check above checked nothing"


def test_kafka_and_clickhouse_come_from_their_operators() -> None:
    kinds = {doc.get("kind"): doc for p in K8S.rglob("*.yaml") for doc in _documents(p)}
    assert {"Kafka", "KafkaNodePool", "KafkaUser", "ClickHouseInstallation"} <= set(kinds)
    assert "StatefulSet" not in kinds, "brokers and databases come from their operators"
    pool = kinds["KafkaNodePool"]["spec"]
    assert pool["replicas"] >= 3 and set(pool["roles"]) == {"controller", "broker"}
    maps = _configmap_literals()["tokenpools-env"]
    replication = int(maps["TOKENPOOLS_KAFKA_REPLICATION_FACTOR"])
    min_insync = int(maps["TOKENPOOLS_KAFKA_MIN_INSYNC_REPLICAS"])
    assert 1 < min_insync < replication <= pool["replicas"], "one broker may be lost"
    listener = kinds["Kafka"]["spec"]["kafka"]["listeners"][0]
    assert listener["tls"] and listener["authentication"]["type"] == "scram-sha-512"
    assert maps["TOKENPOOLS_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    port = int(maps["TOKENPOOLS_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1])
    assert port == listener["port"], "clients dial the TLS listener"


def test_the_sink_is_given_the_clickhouse_server() -> None:
    (sink,) = [c for c in _k8s_containers() if c.expanded()[:3] == ["tokenpools", "sink", "run"]]
    _, command, _ = _resolve(sink.expanded())
    (url,) = [p for p in command.params if p.name == "url"]
    assert url.envvar in sink.env or "--url" in sink.argv, "else the sink opens an embedded store"
