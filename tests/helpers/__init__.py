"""Helpers the test areas share: worker processes, topic tails, the in-process sidecar stack."""
