"""Inference keys are only ever stored and sent as salted hashes.

One deployment-wide salt (a secret, from `TOKENPOOLS_KEY_SALT`) keyed into
HMAC-SHA256 lets a sidecar map a key to its entitlement with one hash and one
dict lookup, while a leaked config, event or log line cannot be replayed as a
key.
"""

from __future__ import annotations

import hashlib
import hmac
import os

HASH_PREFIX = "hs256:"
SALT_ENV = "TOKENPOOLS_KEY_SALT"
DEV_SALT = "tokenpools-dev-salt-change-me"


def key_salt(environ: dict[str, str] | None = None) -> bytes:
    """The deployment's salt; the development default is public and only for local runs."""
    env = os.environ if environ is None else environ
    return env.get(SALT_ENV, DEV_SALT).encode()


def hash_key(key: str, salt: bytes) -> str:
    """`hs256:<hex>` of an inference key; the form configs and events carry."""
    digest = hmac.new(salt, key.encode(), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest


def redact(key: str) -> str:
    """A form of a key that is safe to log: enough to tell keys apart, not to use one."""
    return f"{key[:3]}…({len(key)} chars)" if len(key) > 6 else "…"
