"""Scaling decisions from Kafka applied to the cluster's workloads."""
