"""Prometheus metrics for the VIP, read from the manager at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .manager import VipManager
from .notify import ROLES


class VipCollector(Collector):
    def __init__(self, manager: VipManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        m = self.manager
        hashes = m.status_fields(m.state_dir / "haproxy.cfg")["config"]
        info = GaugeMetricFamily(
            "haproxy_k8s_config_info", "Hashes of the rendered configs (state dir taken "
            "out): two balancers of a pair that differ here have drifted apart",
            labels=["haproxy_sha256"])
        info.add_metric([hashes["haproxy_sha256"] or ""], 1)
        yield info
        if m.settings is None:
            return
        role = GaugeMetricFamily("haproxy_k8s_vrrp_role",
                                 "VRRP role of this balancer (1 on the current one)",
                                 labels=["role"])
        for name in (*ROLES, "UNKNOWN"):
            role.add_metric([name], 1 if m.roles.role == name else 0)
        yield role
        yield CounterMetricFamily("haproxy_k8s_vrrp_transitions",
                                  "VRRP role changes seen since the daemon started",
                                  value=m.roles.transitions)
        yield GaugeMetricFamily("haproxy_k8s_vip_fit",
                                "Whether this balancer offers itself for the VIP (HAProxy up, "
                                "a node UP in every cluster, daemon loop alive)",
                                value=1 if m.link is not None and m.link.fit else 0)


