"""A real Prometheus scrapes a real service: every dashboard query and rule has data.

So no Grafana panel and no rule can point at a metric the service does not export.
"""

from __future__ import annotations

import re
import time

import pytest
import yaml

from streamvae.stream.embedded import free_port
from streamvae.stream.tools import produce_all
from tests.factories import encode, feature_message, make_anomalies, make_normal
from tests.integration.kafka_helpers import Topics, running_service, serve_settings
from tests.integration.prometheus_helpers import (
    RULES,
    dashboard,
    dashboard_queries,
    grafana_expr,
    prometheus,
    query,
)

pytestmark = [pytest.mark.prometheus, pytest.mark.kafka, pytest.mark.timeout(300)]
__all__ = ["prometheus"]  # the fixture


def test_every_panel_query_and_rule_returns_data_from_the_real_service(
    broker, bundle_dir, tmp_path, prometheus
):
    topics = Topics.unique()
    settings = serve_settings(broker, topics, bundle_dir, tmp_path)
    settings = settings.model_copy(update={"metrics_port": free_port()})
    normal = [encode(feature_message(r, rid=f"n{i}")) for i, r in enumerate(make_normal(400))]
    odd = [encode(feature_message(r * 3, rid=f"a{i}")) for i, r in enumerate(make_anomalies(40))]
    with running_service(settings) as running:
        base = prometheus({"streamvae": [f"127.0.0.1:{settings.metrics_port}"]})
        for round_ in range(12):  # a steady stream for rates and histogram quantiles
            produce_all(broker, topics.input, normal[round_ * 30 : round_ * 30 + 30] + odd[:3])
            produce_all(broker, topics.input, [b"{not json"])
            time.sleep(0.5)
        time.sleep(3)
        assert running.service.metrics_url
        missing = [e for e in dashboard_queries() if not query(base, grafana_expr(e))]
        assert not missing, f"dashboard queries without data: {missing}"
        for annotation in dashboard()["annotations"]["list"]:  # runs; no model swap here
            query(base, grafana_expr(annotation["expr"]))
        groups = yaml.safe_load(RULES.read_text())["groups"]
        recorded = [r["record"] for g in groups for r in g["rules"] if "record" in r]
        assert recorded
        silent = [name for name in recorded if not query(base, name)]
        assert not silent, f"recording rules without data: {silent}"
        # raw metric names (not the job:...:rate5m recording names built from them)
        names = set(re.findall(r"(?<![:\w])streamvae_[a-z_]+", RULES.read_text()))
        absent = [
            n for n in sorted(names)
            if not query(base, f'{{__name__=~"{n}|{n}_bucket"}}')
        ]  # fmt: skip
        assert not absent, f"rules use metrics the service does not export: {absent}"
        assert not query(base, 'ALERTS{alertname="StreamvaeNoModelLoaded"}')
