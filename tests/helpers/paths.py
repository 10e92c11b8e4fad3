"""Where the checkout is, for the example configs under deploy/."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
