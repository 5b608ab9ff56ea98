"""What the fused tabular default costs the service: records/s plain vs fused, index figures.

1. ``serve`` records/s on the same topic with the previous default (``neg_elbo`` alone) and
   with the shipped default (``fused``: the ELBO plus the distance to the nearest of
   ``model.neighbour_rows`` = 2048 indexed rows), 30 features, kafka-python, interleaved,
   median of 3.
2. The neighbour index for 100k training rows: its memory and query time per record, capped
   at the default 2048 indexed rows (what ships) and uncapped (all 100k rows), scoring batches
   of 1,000 rows; three times one index's figures, since the fused score queries the rows
   in three scalings (standardised, min-max, IQR), each its own copy.

Prints both tables and writes ``fused_scoring.json``. No timing assertions.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import numpy as np
import pytest
import torch

from streamvae.bundle import ModelBundle, save_bundle
from streamvae.config import ModelSettings
from streamvae.scoring.fusion import VIEW_NAMES, NeighbourIndex, NeighbourView, sample_rows
from tests.benchmarks.harness import (
    D,
    encode_all,
    fill_topic,
    median,
    records,
    serve_settings,
    service_run,
    write_json,
)
from tests.factories import make_bundle, make_normal

N_RECORDS = 100_000
REPS = 3
DEFAULT_ROWS = ModelSettings().neighbour_rows


def _fused_like_the_default(bundle: ModelBundle) -> ModelBundle:
    """``bundle`` with an index of the default size (the factory's holds 400 rows), and its
    views (the distance under min-max and IQR scaling) over the same rows."""
    assert bundle.fusion is not None and bundle.preprocess.scaler is not None
    rows = bundle.preprocess.scaler.transform(make_normal(DEFAULT_ROWS, D, seed=11))
    index = NeighbourIndex(rows, bundle.fusion.index.k)
    views = tuple(NeighbourView.over(index, v.name, v.factors, v.tail) for v in bundle.fusion.views)
    return replace(bundle, fusion=replace(bundle.fusion, index=index, views=views))


def _query_seconds_per_record(index: NeighbourIndex, queries: torch.Tensor) -> float:
    with torch.inference_mode():
        index.distances(queries)
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            index.distances(queries)
            runs.append((time.perf_counter() - started) / queries.shape[0])
    return median(runs)


@pytest.mark.benchmark
@pytest.mark.timeout(1800)
def test_fused_default_cost_in_the_service(broker, tmp_path):
    fused = _fused_like_the_default(make_bundle(d=D, epochs=5, fused=True))
    plain = make_bundle(d=D, epochs=5)  # the same network (same seed), scoring neg_elbo
    dirs = {
        "neg_elbo (before)": save_bundle(plain, tmp_path / "plain"),
        "fused (default)": save_bundle(fused, tmp_path / "fused"),
    }
    service = []
    for per_message in (1, 100):
        topic = f"fused-{uuid.uuid4().hex[:8]}"
        messages = encode_all(records(N_RECORDS), per_message)
        fill_topic(broker, topic, messages)
        rates: dict[str, list[float]] = {label: [] for label in dirs}
        for rep in range(REPS):
            for label, model_dir in dirs.items():
                group = f"g-{topic}-{rep}-{len(rates[label])}-{label[:5]}"
                stats = service_run(
                    serve_settings(broker, model_dir, tmp_path, topic, group), len(messages)
                )
                assert stats.scored == N_RECORDS
                rates[label].append(stats.scored / stats.active_s)
        for label, runs in rates.items():
            service.append(
                {
                    "records_per_message": per_message,
                    "model": label,
                    "records_per_s": median(runs),
                    "runs": runs,
                }
            )
    print(f"\n{'records / message':>17} {'model':<18} {'serve rec/s':>12}")
    for row in service:
        print(f"{row['records_per_message']:>17} {row['model']:<18} {row['records_per_s']:>12,.0f}")

    train = make_normal(100_000, D, seed=12)
    queries = torch.from_numpy(make_normal(1_000, D, seed=13))
    index_rows = []
    views = 1 + len(VIEW_NAMES)  # the standardised distance and one per view, same cost each
    for label, rows in (
        (f"capped ({DEFAULT_ROWS} rows, default)", sample_rows(train, DEFAULT_ROWS, seed=0)),
        ("uncapped (100,000 rows)", train),
    ):
        index = NeighbourIndex(rows, 1)
        per_record = views * _query_seconds_per_record(index, queries)
        index_rows.append({"index": label, "rows": int(rows.shape[0]), "bytes": views * index.nbytes,
                           "query_us_per_record": per_record * 1e6})  # fmt: skip
    print(f"\n{'index for 100k training rows':<32} {'memory':>10} {'query / record':>15}")
    for row in index_rows:
        print(
            f"{row['index']:<32} {row['bytes'] / 2**20:>8.2f} MB {row['query_us_per_record']:>12.1f} us"
        )
    write_json("fused_scoring.json", {"service": service, "index": index_rows})
    assert np.isfinite([r["records_per_s"] for r in service]).all()
