"""Where the checkout is, and the files of it the tests read: example configs, the trace sample."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "deploy" / "examples"
SAMPLE_TRACE = REPO / "tokenpools_cli" / "traces" / "azure_llm_2023_code_sample.csv"
