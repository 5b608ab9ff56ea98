"""Every Prometheus metric the scoring service exports, on an injected registry."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from streamvae.metrics.bulk import BulkHistogram
from streamvae.thresholds import DriftSnapshot
from streamvae.types import DEAD_LETTER_REASONS, SEVERITIES, ModelRef

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# score / threshold: 1.0 is the decision boundary, so one bucket set fits every model
RATIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


class ServiceMetrics:
    """The service's metrics; construct once per registry (tests pass a fresh one)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, topic: str = "") -> None:
        """Create every metric on ``registry``.

        Args:
            registry: where the metrics live (default: a fresh one).
            topic: the input topic, a label of ``model_info`` so that dashboards and alert
                rules can tell services apart by what they consume (one series a process:
                no per-record label, so no extra cardinality).
        """
        registry = CollectorRegistry() if registry is None else registry
        self.registry = registry
        self.topic = topic
        ns = "streamvae"
        self.messages_consumed = Counter(
            "messages_consumed", "Kafka messages consumed.", namespace=ns, registry=registry
        )
        self.records_consumed = Counter(
            "records_consumed",
            "Records received (batch elements; an undecodable message counts as one).",
            namespace=ns,
            registry=registry,
        )
        self.records_scored = Counter(
            "records_scored", "Records scored.", namespace=ns, registry=registry
        )
        self.records_dead_lettered = Counter(
            "records_dead_lettered",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            namespace=ns,
            registry=registry,
        )
        self.alerts = Counter(
            "alerts", "Alerts produced, by severity.", ["severity"], namespace=ns, registry=registry
        )
        self.alerts_suppressed = Counter(
            "alerts_suppressed",
            "Over-threshold scores whose alert was held back, by reason (cooldown: the key "
            "alerted recently; unconfirmed: fewer than m of its last n scores were flagged).",
            ["reason"],
            namespace=ns,
            registry=registry,
        )
        self.score_ratio = BulkHistogram(
            f"{ns}_score_threshold_ratio",
            "Score divided by the threshold in force (> 1 alerts).",
            RATIO_BUCKETS,
            registry,
        )
        self.threshold = Gauge("threshold", "Threshold in force.", namespace=ns, registry=registry)
        self.expected_alert_ratio = Gauge(
            "expected_alert_ratio",
            "Alert rate on normal traffic expected from calibration.",
            namespace=ns,
            registry=registry,
        )
        self.scoring_seconds = Histogram(
            "scoring_duration_seconds",
            "Time to decode, score and decide one batch.",
            buckets=LATENCY_BUCKETS_S,
            namespace=ns,
            registry=registry,
        )
        self.end_to_end_seconds = BulkHistogram(
            f"{ns}_end_to_end_latency_seconds",
            "Record timestamp to its score being produced.",
            LATENCY_BUCKETS_S,
            registry,
        )
        self.batch_size = Histogram(
            "batch_size_records", "Records per scored batch.", buckets=BATCH_BUCKETS, namespace=ns,
            registry=registry,
        )  # fmt: skip
        self.consumer_lag = Gauge(
            "consumer_lag_records",
            "Records behind the high watermark, per partition.",
            ["topic", "partition"],
            namespace=ns,
            registry=registry,
        )
        self.model_info = Gauge(
            "model_info",
            "The model being served and the topic it scores (value 1).",
            ["name", "version", "alias", "score_kind", "topic"],
            namespace=ns,
            registry=registry,
        )
        self.model_loads = Counter(
            "model_loads", "Models loaded (start and reloads).", namespace=ns, registry=registry
        )
        self.model_reloads = Counter(
            "model_reloads",
            "Live model swaps attempted after the registry alias moved, by result "
            "(swapped; refused: failed validation, the old model keeps serving; failed: the "
            "registry or download failed, retried).",
            ["result"],
            namespace=ns,
            registry=registry,
        )
        self.shadow_model_info = Gauge(
            "shadow_model_info",
            "The shadow (challenger) model scored alongside, alerts not emitted (value 1).",
            ["name", "version", "alias", "score_kind", "topic"],
            namespace=ns,
            registry=registry,
        )
        self.shadow_scored = Counter(
            "shadow_records_scored",
            "Records scored by the shadow model.",
            namespace=ns,
            registry=registry,
        )
        self.shadow_alerts = Counter(
            "shadow_alerts",
            "Alerts the shadow model would have raised (not emitted), by severity.",
            ["severity"],
            namespace=ns,
            registry=registry,
        )
        self.errors = Counter(
            "errors",
            "Internal errors, by kind (produce, commit, scoring: a batch raised; "
            "dependency: the schema registry failed; output_too_large: an output cut to fit; "
            "map_write: an anomaly map not saved).",
            ["kind"],
            namespace=ns,
            registry=registry,
        )
        self.up = Gauge("up", "1 while the scoring loop runs.", namespace=ns, registry=registry)
        self.last_batch_timestamp = Gauge(
            "last_batch_timestamp_seconds",
            "Unix time of the last processed batch.",
            namespace=ns,
            registry=registry,
        )
        self.drift_ks = Gauge(
            "drift_ks_statistic",
            "Kolmogorov-Smirnov distance of the live score window from the calibration scores.",
            namespace=ns,
            registry=registry,
        )
        self.drift_psi = Gauge(
            "drift_psi",
            "Population stability index of the live score window vs the calibration scores.",
            namespace=ns,
            registry=registry,
        )
        self.live_alert_ratio = Gauge(
            "live_alert_ratio",
            "Share of the live score window that alerted (compare expected_alert_ratio).",
            namespace=ns,
            registry=registry,
        )
        self.drift_window = Gauge(
            "drift_window_records",
            "Scores in the live drift window.",
            namespace=ns,
            registry=registry,
        )
        self.records_unscored = Counter(
            "records_unscored",
            "KPI points not scored, by status (warming_up: the series' window is not full; "
            "sparse: too few observed points in it; replayed: absorbed before a restart).",
            ["status"],
            namespace=ns,
            registry=registry,
        )
        self.series_live = Gauge(
            "kpi_series_live", "KPI series with window state held.", namespace=ns, registry=registry
        )
        self.state_bytes = Gauge(
            "kpi_state_bytes",
            "Approximate memory held by KPI window state.",
            namespace=ns,
            registry=registry,
        )
        for status in ("warming_up", "sparse", "replayed"):
            self.records_unscored.labels(status=status)
        for reason in DEAD_LETTER_REASONS:
            self.records_dead_lettered.labels(reason=reason)
        for severity in SEVERITIES:
            self.alerts.labels(severity=severity)
            self.shadow_alerts.labels(severity=severity)
        for why in ("cooldown", "unconfirmed"):
            self.alerts_suppressed.labels(reason=why)
        for result in ("swapped", "refused", "failed"):
            self.model_reloads.labels(result=result)
        for kind in ("produce", "commit", "scoring", "dependency", "output_too_large", "map_write"):
            self.errors.labels(kind=kind)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            # RSS, CPU seconds, open fds, Python version, GC counts; ValueError: already on
            # this registry (the process-wide default one has them)
            with contextlib.suppress(ValueError):
                collector(registry=registry)

    def set_model(
        self, model: ModelRef, score_kind: str, threshold: float, expected_rate: float
    ) -> None:
        """Publish the model and threshold now in force."""
        self.model_info.clear()
        self.model_info.labels(
            name=model.name, version=model.version, alias=model.alias or "",
            score_kind=score_kind, topic=self.topic,
        ).set(1)  # fmt: skip
        self.threshold.set(threshold)
        self.expected_alert_ratio.set(expected_rate)
        self.model_loads.inc()

    @staticmethod
    def count_by(counter: Counter, label: str, counts: Mapping[str, int]) -> None:
        """Add ``counts`` (label value -> amount) to a counter with one label."""
        for value, amount in counts.items():
            counter.labels(**{label: value}).inc(amount)

    def set_shadow(self, model: ModelRef | None, score_kind: str = "") -> None:
        """Publish the shadow model now scored alongside (``None``: none)."""
        self.shadow_model_info.clear()
        if model is not None:
            self.shadow_model_info.labels(
                name=model.name, version=model.version, alias=model.alias or "",
                score_kind=score_kind, topic=self.topic,
            ).set(1)  # fmt: skip

    def set_drift(self, snapshot: DriftSnapshot) -> None:
        """Publish drift statistics (NaN until the window holds enough scores)."""
        self.drift_window.set(snapshot.count)
        self.drift_ks.set(snapshot.ks)
        self.drift_psi.set(snapshot.psi)
        self.live_alert_ratio.set(snapshot.alert_rate)

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Publish consumer lag per partition."""
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)
