"""The only prometheus_client code: the service's metrics and their HTTP endpoint."""

from __future__ import annotations

from prometheus_client import CollectorRegistry as Registry

from streamvae.metrics.http import MetricsServer
from streamvae.metrics.service_metrics import ServiceMetrics

__all__ = ["MetricsServer", "Registry", "ServiceMetrics"]
