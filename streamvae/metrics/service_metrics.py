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
NS = "streamvae"
RATIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


class ServiceMetrics:
    """The service's metrics; construct once per registry (tests pass a fresh one)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, topic: str = "") -> None:
        """Create every metric on ``registry``, with each labelled series at zero.

        Args:
            registry: where the metrics live (default: a fresh one).
            topic: the input topic, a label of ``model_info`` so that dashboards and alert
                rules can tell services apart by what they consume (one series a process:
                no per-record label, so no extra cardinality).
        """
        self.registry = CollectorRegistry() if registry is None else registry
        self.topic = topic
        self._records()
        self._alerting()
        self._timing()
        self._models()
        self._health()
        self._drift()
        self._kpi_state()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            # RSS, CPU seconds, open fds, Python version, GC counts; ValueError: already on
            # this registry (the process-wide default one has them)
            with contextlib.suppress(ValueError):
                collector(registry=self.registry)

    def _counter(self, name: str, doc: str, label: str | None = None, *values: str) -> Counter:
        """A counter ``streamvae_<name>_total``; with ``label``, its ``values`` start at 0."""
        counter = Counter(
            name, doc, [] if label is None else [label], namespace=NS, registry=self.registry
        )
        for value in values:
            counter.labels(value)
        return counter

    def _gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        """A gauge ``streamvae_<name>``."""
        return Gauge(name, doc, list(labels), namespace=NS, registry=self.registry)

    def _records(self) -> None:
        """What came in and where it went."""
        self.messages_consumed = self._counter("messages_consumed", "Kafka messages consumed.")
        self.records_consumed = self._counter(
            "records_consumed",
            "Records received (batch elements; an undecodable message counts as one).",
        )
        self.records_scored = self._counter("records_scored", "Records scored.")
        self.records_dead_lettered = self._counter(
            "records_dead_lettered",
            "Records sent to the dead-letter topic, by reason.",
            "reason",
            *DEAD_LETTER_REASONS,
        )
        self.errors = self._counter(
            "errors",
            "Internal errors, by kind (produce, commit, scoring: a batch raised; "
            "dependency: the schema registry failed; output_too_large: an output cut to fit; "
            "map_write: an anomaly map not saved).",
            "kind",
            *("produce", "commit", "scoring", "dependency", "output_too_large", "map_write"),
        )

    def _alerting(self) -> None:
        """Alerts, held-back alerts, and scores against the threshold."""
        self.alerts = self._counter(
            "alerts", "Alerts produced, by severity.", "severity", *SEVERITIES
        )
        self.alerts_suppressed = self._counter(
            "alerts_suppressed",
            "Over-threshold scores whose alert was held back, by reason (cooldown: the key "
            "alerted recently; unconfirmed: fewer than m of its last n scores were flagged).",
            "reason",
            *("cooldown", "unconfirmed"),
        )
        self.score_ratio = BulkHistogram(
            f"{NS}_score_threshold_ratio",
            "Score divided by the threshold in force (> 1 alerts).",
            RATIO_BUCKETS,
            self.registry,
        )
        self.threshold = self._gauge("threshold", "Threshold in force.")
        self.expected_alert_ratio = self._gauge(
            "expected_alert_ratio", "Alert rate on normal traffic expected from calibration."
        )

    def _timing(self) -> None:
        """Batch time and size, end-to-end latency, consumer lag."""
        self.scoring_seconds = Histogram(
            "scoring_duration_seconds", "Time to decode, score and decide one batch.",
            buckets=LATENCY_BUCKETS_S, namespace=NS, registry=self.registry,
        )  # fmt: skip
        self.end_to_end_seconds = BulkHistogram(
            f"{NS}_end_to_end_latency_seconds",
            "Record timestamp to its score being produced.",
            LATENCY_BUCKETS_S,
            self.registry,
        )
        self.batch_size = Histogram(
            "batch_size_records", "Records per scored batch.", buckets=BATCH_BUCKETS,
            namespace=NS, registry=self.registry,
        )  # fmt: skip
        self.consumer_lag = self._gauge(
            "consumer_lag_records",
            "Records behind the high watermark, per partition.",
            ("topic", "partition"),
        )

    def _models(self) -> None:
        """The served model, its loads and swaps, and the shadow model's would-be alerts."""
        info = ("name", "version", "alias", "score_kind", "topic")
        self.model_info = self._gauge(
            "model_info", "The model being served and the topic it scores (value 1).", info
        )
        self.model_loads = self._counter("model_loads", "Models loaded (start and reloads).")
        self.model_reloads = self._counter(
            "model_reloads",
            "Live model swaps attempted after the registry alias moved, by result "
            "(swapped; refused: failed validation, the old model keeps serving; failed: the "
            "registry or download failed, retried).",
            "result",
            *("swapped", "refused", "failed"),
        )
        self.shadow_model_info = self._gauge(
            "shadow_model_info",
            "The shadow (challenger) model scored alongside, alerts not emitted (value 1).",
            info,
        )
        self.shadow_scored = self._counter(
            "shadow_records_scored", "Records scored by the shadow model."
        )
        self.shadow_alerts = self._counter(
            "shadow_alerts",
            "Alerts the shadow model would have raised (not emitted), by severity.",
            "severity",
            *SEVERITIES,
        )

    def _health(self) -> None:
        """Whether the loop runs, and when it last handled a batch."""
        self.up = self._gauge("up", "1 while the scoring loop runs.")
        self.last_batch_timestamp = self._gauge(
            "last_batch_timestamp_seconds", "Unix time of the last processed batch."
        )

    def _drift(self) -> None:
        """The live score window against the calibration scores."""
        self.drift_ks = self._gauge(
            "drift_ks_statistic",
            "Kolmogorov-Smirnov distance of the live score window from the calibration scores.",
        )
        self.drift_psi = self._gauge(
            "drift_psi",
            "Population stability index of the live score window vs the calibration scores.",
        )
        self.live_alert_ratio = self._gauge(
            "live_alert_ratio",
            "Share of the live score window that alerted (compare expected_alert_ratio).",
        )
        self.drift_window = self._gauge("drift_window_records", "Scores in the live drift window.")

    def _kpi_state(self) -> None:
        """KPI points not scored, and the window state held."""
        self.records_unscored = self._counter(
            "records_unscored",
            "KPI points not scored, by status (warming_up: the series' window is not full; "
            "sparse: too few observed points in it; replayed: absorbed before a restart).",
            "status",
            *("warming_up", "sparse", "replayed"),
        )
        self.series_live = self._gauge("kpi_series_live", "KPI series with window state held.")
        self.state_bytes = self._gauge(
            "kpi_state_bytes", "Approximate memory held by KPI window state."
        )

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
