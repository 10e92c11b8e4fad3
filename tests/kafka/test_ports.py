"""A local broker's ports stay out of the kernel's ephemeral range.

A port the kernel hands out for outgoing connections can be taken by any client's
socket while the broker is down, and the broker's restart then fails with "Address
already in use" (issue 11, item 10). Ports chosen below the range cannot collide so.
"""

from __future__ import annotations

from pathlib import Path

from connectors.kafka.broker import LocalKafka, ephemeral_port_range, free_port


def test_the_ephemeral_range_is_read_from_the_kernel() -> None:
    low, high = ephemeral_port_range()
    text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    assert (low, high) == (int(text[0]), int(text[1]))


def test_free_ports_are_below_the_ephemeral_range() -> None:
    low, _ = ephemeral_port_range()
    ports = [free_port() for _ in range(50)]
    assert all(1024 <= port < low for port in ports), ports
    assert len(set(ports)) > 1, "ports are picked at random, so parallel runs do not collide"


def test_a_local_broker_defaults_to_ports_outside_the_ephemeral_range(tmp_path: Path) -> None:
    low, _ = ephemeral_port_range()
    broker = LocalKafka(data_dir=tmp_path)
    assert broker.port < low
    assert broker.controller_port < low
