"""A fleet on real parts: two services, three replicas, one real Prometheus, deploy/'s rules.

Service ``fraud`` (a tabular model, two replicas in one consumer group) and service ``kpi``
(a KPI window model, one replica) score their own topics on the real broker; Prometheus
scrapes the three metrics endpoints as two jobs. With the dashboard's variables set to each
service in turn, every panel query returns that service's series only; with a service that
does not exist, none. The alert rules (``for`` dropped, so they fire within the test) fire
for the service whose traffic warrants it, labelled with its model and topic, and not for
the other.
"""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from streamvae.bundle import save_bundle
from streamvae.stream.admin import ensure_topics
from streamvae.stream.embedded import free_port
from streamvae.stream.tools import produce_all
from tests.factories import (
    KPI_SERIES,
    encode,
    feature_message,
    kpi_point,
    kpi_values,
    make_anomalies,
    make_kpi_bundle,
    make_normal,
)
from tests.integration.kafka_helpers import Topics, running_service, serve_settings
from tests.integration.prometheus_helpers import (
    dashboard,
    dashboard_queries,
    grafana_expr,
    prometheus,
    query,
)

pytestmark = [pytest.mark.prometheus, pytest.mark.kafka, pytest.mark.timeout(400)]
__all__ = ["prometheus"]  # the fixture

FRAUD, KPI = "fraud", "kpi"
FRAUD_MODEL, KPI_MODEL = "fraud-vae", "kpi-windows"


def _series_labels(result: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [r["metric"] for r in result]


def _only(result: list[dict[str, Any]], job: str, instances: set[str]) -> list[dict[str, str]]:
    """The series of ``result`` that name another service or another service's replica."""
    return [
        labels
        for labels in _series_labels(result)
        if labels.get("job", job) != job
        or labels.get("instance", next(iter(instances))) not in instances
    ]


def _fraud_traffic(broker: str, topic: str, round_: int) -> None:
    """Half anomalies (an alert storm) and a quarter malformed (dead-letter budget burn)."""
    now = time.time_ns() // 1_000_000
    normal = make_normal(20, seed=round_)
    odd = make_anomalies(20, seed=round_) * 3
    rows = [("n", r) for r in normal] + [("a", r) for r in odd]
    values = [
        encode(feature_message(r, rid=f"{kind}{round_}-{i}", ts=now))
        for i, (kind, r) in enumerate(rows)
    ]
    values += [b"{not json"] * 14
    produce_all(broker, topic, values)


def _kpi_traffic(broker: str, topic: str, round_: int, per_round: int = 8) -> None:
    """Normal seasonal points, stamped on their one-minute grid (minutes old: late)."""
    items = []
    for i in range(round_ * per_round, (round_ + 1) * per_round):
        for series in KPI_SERIES:
            value = float(kpi_values(series, 1200 + i, 1)[0])
            items.append((series.encode(), kpi_point(series, 1200 + i, value)))
    keys = [k for k, _ in items]
    produce_all(broker, topic, [v for _, v in items], key=lambda i: keys[i])


def _wait_for(base: str, expr: str, count: int = 1, timeout_s: float = 60) -> list[dict[str, Any]]:
    """``expr``'s result once it has ``count`` series (or whatever it has after the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = query(base, expr)
        if len(result) >= count or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def _firing(base: str, alert: str) -> set[tuple[str, str, str]]:
    result = query(base, f'ALERTS{{alertname="{alert}", alertstate="firing"}}')
    labels = [r["metric"] for r in result]
    return {(m["job"], m.get("model", ""), m.get("topic", "")) for m in labels}


def test_every_dashboard_query_and_alert_sees_only_its_own_service(
    broker, bundle_dir, tmp_path: Path, prometheus
):
    fraud_dir = shutil.copytree(bundle_dir, tmp_path / "models" / FRAUD_MODEL)
    kpi_dir = save_bundle(make_kpi_bundle(window_len=16), tmp_path / "models" / KPI_MODEL)
    fraud_topics, kpi_topics = Topics.unique(), Topics.unique()
    fraud = [
        serve_settings(broker, fraud_topics, fraud_dir, tmp_path / f"fraud-{i}").model_copy(
            update={"metrics_port": free_port()}
        )
        for i in range(2)
    ]
    kpi = serve_settings(broker, kpi_topics, kpi_dir, tmp_path / "kpi").model_copy(
        update={"metrics_port": free_port()}
    )
    ensure_topics(kpi.kafka, (f"{kpi_topics.input}-state",), partitions=2)
    targets = {
        FRAUD: [f"127.0.0.1:{s.metrics_port}" for s in fraud],
        KPI: [f"127.0.0.1:{kpi.metrics_port}"],
    }
    topic_of = {FRAUD: fraud_topics.input, KPI: kpi_topics.input}
    model_of = {FRAUD: FRAUD_MODEL, KPI: KPI_MODEL}
    with ExitStack() as stack:
        for settings in (*fraud, kpi):
            stack.enter_context(running_service(settings))
        base = prometheus(targets, immediate=True)
        assert len(_wait_for(base, "up == 1", count=3)) == 3
        for round_ in range(16):  # a steady stream for rates, quantiles and the rules
            _fraud_traffic(broker, fraud_topics.input, round_)
            _kpi_traffic(broker, kpi_topics.input, round_)
            time.sleep(0.5)
        _wait_for(base, 'ALERTS{alertname="StreamvaeAlertStorm", alertstate="firing"}')
        time.sleep(3)

        # the variables' own queries list each service's replicas, models and topics
        assert {r["metric"]["job"] for r in query(base, "streamvae_up")} == {FRAUD, KPI}
        for job in (FRAUD, KPI):
            up = query(base, grafana_expr('streamvae_up{job=~"$job"}', job=job))
            assert {r["metric"]["instance"] for r in up} == set(targets[job])
            info = query(base, f'streamvae_model_info{{job="{job}"}}')
            assert {(r["metric"]["name"], r["metric"]["topic"]) for r in info} == {
                (model_of[job], topic_of[job])
            }

        queries = dashboard_queries()
        seen: dict[str, set[str]] = {q: set() for q in queries}
        selections: list[tuple[str, dict[str, str]]] = []
        for job in (FRAUD, KPI):
            selections += [
                (job, {"job": job}),
                (job, {"model": model_of[job]}),
                (job, {"topic": topic_of[job]}),
            ]
        one_replica = targets[FRAUD][1]
        selections.append((FRAUD, {"instance": one_replica.replace(".", "\\\\.")}))
        for job, values in selections:
            instances = {one_replica} if "instance" in values else set(targets[job])
            for q in queries:
                result = query(base, grafana_expr(q, **values))
                leaked = _only(result, job, instances)
                assert not leaked, f"{values}: {q} returned other services' series {leaked}"
                if result:
                    seen[q].add(job)
        never = [q for q, jobs in seen.items() if not jobs]
        assert not never, f"queries without data for any service: {never}"
        assert {FRAUD, KPI} <= set().union(*seen.values())
        # KPI-only panels have data for the KPI service; per-service panels for both
        kpi_state = next(q for q in queries if "streamvae_kpi_series_live" in q)
        assert query(base, grafana_expr(kpi_state, job=KPI))[0]["value"][1] != "0"
        scored = next(
            q for q in queries if q.startswith("sum by (job) (rate(streamvae_records_scored_total")
        )
        assert seen[scored] == {FRAUD, KPI}

        # a multi-value selection (Grafana's regex alternation) and a service that does not exist
        services_up = next(
            t["expr"] for p in dashboard()["panels"] if p["title"] == "Services up"
            for t in p["targets"]
        )  # fmt: skip
        assert query(base, grafana_expr(services_up, job=f"({FRAUD}|{KPI})"))[0]["value"][1] == "2"
        assert query(base, grafana_expr(services_up, job=FRAUD))[0]["value"][1] == "1"
        for q in queries:
            assert not query(base, grafana_expr(q, job="nosuch")), q

        # alerts name the right service, its model and its topic, and only that one
        assert _firing(base, "StreamvaeAlertStorm") == {(FRAUD, FRAUD_MODEL, topic_of[FRAUD])}
        _wait_for(base, 'ALERTS{alertname="StreamvaeDeadLetterBudgetBurn", alertstate="firing"}')
        assert _firing(base, "StreamvaeDeadLetterBudgetBurn") == {
            (FRAUD, FRAUD_MODEL, topic_of[FRAUD])
        }
        _wait_for(base, 'ALERTS{alertname="StreamvaeLatencyBudgetBurn", alertstate="firing"}')
        assert _firing(base, "StreamvaeLatencyBudgetBurn") == {(KPI, KPI_MODEL, topic_of[KPI])}
        for alert in ("StreamvaeNoModelLoaded", "StreamvaeReplicaDown", "StreamvaeAbsent"):
            assert not _firing(base, alert), alert
