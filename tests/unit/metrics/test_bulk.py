from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streamvae.metrics.bulk import BulkHistogram

BUCKETS = (0.1, 0.5, 1.0, 2.5)


def _exposition(registry: CollectorRegistry) -> list[str]:
    return [
        line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")
    ]


def test_bulk_histogram_exports_what_prometheus_client_would():
    values = np.r_[np.random.default_rng(0).exponential(size=500), [0.1, 0.5, 1.0, 2.5, 9.0]]
    reference, bulk = CollectorRegistry(), CollectorRegistry()
    classic = Histogram("lat", "latency", buckets=BUCKETS, registry=reference)
    for v in values:
        classic.observe(float(v))
    batched = BulkHistogram("lat", "latency", BUCKETS, bulk)
    batched.observe_many(values[:200])
    batched.observe_many(values[200:])
    batched.observe_many([float("nan")])
    ours = {k: v for k, v in (line.rsplit(" ", 1) for line in _exposition(bulk))}
    theirs = {
        k: v
        for k, v in (line.rsplit(" ", 1) for line in _exposition(reference))
        if "_created" not in k
    }
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert (
            float(ours[key]) == float(value)
            if "_sum" not in key
            else np.isclose(float(ours[key]), float(value))
        )
    assert bulk.get_sample_value("lat_count") == 505
