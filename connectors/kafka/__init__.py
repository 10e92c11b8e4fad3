"""Kafka plumbing shared by every connector: the local broker, topic admin, producers, consumers."""
