"""Prometheus metrics for one guard, in its own registry (nothing is registered at import)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["GuardMetrics"]


class GuardMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.decisions = Counter(
            "perisai_guard_decisions",
            "Guard decisions by action, verdict and reason.",
            ["action", "verdict", "reason"],
            registry=self.registry,
        )
        self.backend_errors = Counter(
            "perisai_guard_backend_errors",
            "State backend failures, by the fail mode applied.",
            ["fail"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "perisai_guard_decision_seconds",
            "Time to decide, by action.",
            ["action"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
            registry=self.registry,
        )
        self.verifications = Counter(
            "perisai_guard_verifications",
            "Verification checks by outcome.",
            ["status"],
            registry=self.registry,
        )

        # labelled children, looked up once: ``labels()`` costs more than the decision's counters
        self._decision_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def decided(self, action: str, verdict: str, reason: str, seconds: float) -> None:
        """Count one decision and observe how long it took."""
        key = (action, verdict, reason)
        children = self._decision_children.get(key)
        if children is None:
            children = self._decision_children[key] = (
                self.decisions.labels(*key),
                self.latency.labels(action),
            )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
