"""The local stack's own ports (default_ports=False): every service gets ports no other one has, even
when the kernel hands the same free port to two probes in a row (a stack once gave its coordinator and
its generator one port, and the generator failed to bind)."""

from __future__ import annotations

from inspatio_world import stack as stack_module
from inspatio_world.stack import LocalStack


def test_a_port_handed_out_twice_is_given_to_one_service_only(tmp_path, monkeypatch):
    probes = iter([50100, 50100, 50101, 50100, 50102, 50101, 50103, 50104, 50105, 50105, 50106, 50107])
    monkeypatch.setattr(stack_module, "free_port", lambda: next(probes))
    monkeypatch.setattr(LocalStack, "spawn", lambda self, name: None)  # the ports alone: no process
    monkeypatch.setattr(LocalStack, "wait_ready", lambda self, timeout, names=(): None)
    stack = LocalStack((tmp_path / "store").as_uri(), tmp_path, default_ports=False).start()
    ports = [int(a.rpartition(":")[2]) for a in (*stack.addresses.values(), *stack.metrics_addresses.values())]
    assert sorted(ports) == list(range(50100, 50108))
