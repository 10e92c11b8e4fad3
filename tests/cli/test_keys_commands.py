"""Inference keys: only salted hashes are stored or sent, and logs never carry a usable key."""

from __future__ import annotations

from tokenpools.keys import hash_key, key_salt, redact


def test_the_same_key_and_salt_always_give_the_same_hash() -> None:
    assert hash_key("sk-abc", b"s1") == hash_key("sk-abc", b"s1")


def test_a_different_salt_gives_a_different_hash() -> None:
    assert hash_key("sk-abc", b"s1") != hash_key("sk-abc", b"s2")


def test_the_hash_does_not_contain_the_key() -> None:
    assert "sk-secret-value" not in hash_key("sk-secret-value", b"salt")


def test_salt_comes_from_the_environment() -> None:
    assert key_salt({"TOKENPOOLS_KEY_SALT": "prod"}) == b"prod"


def test_redacted_keys_keep_too_little_to_be_used() -> None:
    key = "sk-live-0123456789abcdef"
    shown = redact(key)
    assert key not in shown and len(shown) < len(key)


def test_keys_hash_command_prints_what_a_config_lists_and_warns_about_the_dev_salt(
    monkeypatch,
) -> None:
    from typer.testing import CliRunner

    from tokenpools_cli.main import app

    monkeypatch.delenv("TOKENPOOLS_KEY_SALT", raising=False)
    result = CliRunner().invoke(app, ["keys", "hash", "sk-demo-spot"])
    assert result.exit_code == 0
    assert hash_key("sk-demo-spot", key_salt({})) in result.output
    assert "development salt" in result.output
