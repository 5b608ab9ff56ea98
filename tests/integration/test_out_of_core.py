"""Training on a directory of Parquet files read batch by batch (data larger than memory).

The streamed run registers a calibrated version like an in-memory one; its scaler is the
exact scaler of its training rows; its split is the same run after run; and it detects as
well as in-memory training on the same rows.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from streamvae.bundle import TabularDetector
from streamvae.config import TrainSettings
from streamvae.data.schema import StandardScaler
from streamvae.data.streaming import row_fraction
from streamvae.scoring import roc_auc
from streamvae.tracking import load_resolved, resolve
from streamvae.workflows.train import train
from tests.factories import feature_names, make_anomalies, make_normal

pytestmark = [pytest.mark.mlflow, pytest.mark.timeout(600)]


def _settings(tracking, path, name: str) -> TrainSettings:
    return TrainSettings.model_validate(
        {
            "data": {"path": str(path), "batch_rows": 1000},
            "training": {"epochs": 25, "device": "cpu"},
            "tracking": tracking.model_dump() | {"registered_model": name},
        }
    )


def test_streamed_parquet_trains_like_memory_and_splits_stably(tracking, tmp_path):
    names = feature_names(6)
    parts = tmp_path / "parts"
    parts.mkdir()
    chunks = [make_normal(3000, 6, seed=i) for i in range(3)]
    for i, x in enumerate(chunks):
        frame = pl.DataFrame({n: x[:, j] for j, n in enumerate(names)})
        frame.with_columns(pl.lit(0).alias("label")).write_parquet(parts / f"part-{i}.parquet")
    everything = np.vstack(chunks).astype(np.float32)
    pl.DataFrame({n: everything[:, j] for j, n in enumerate(names)}).write_parquet(
        tmp_path / "all.parquet"
    )
    test = np.vstack([make_normal(500, 6, seed=20), make_anomalies(100, 6, seed=21)])
    labels = np.r_[np.zeros(500), np.ones(100)]

    streamed = train(_settings(tracking, parts, "streamed"))
    again = train(_settings(tracking, parts, "again"))
    in_memory = train(_settings(tracking, tmp_path / "all.parquet", "memory"))
    assert streamed.bundle.meta["streamed"] is True and "streamed" not in in_memory.bundle.meta
    assert streamed.threshold is not None and streamed.threshold.default.model_version == "1"
    assert (streamed.n_train, streamed.n_calibration) == (again.n_train, again.n_calibration)
    f = row_fraction(everything, seed=0)
    assert streamed.n_calibration == int((f < 0.2).sum()), "calibration: the rows hashed < 0.2"
    train_rows = everything[f >= 0.2 + 0.8 * 0.2]
    assert streamed.n_train == train_rows.shape[0]
    scaler = streamed.bundle.preprocess.scaler
    exact = StandardScaler.fit(train_rows)
    assert np.allclose(scaler.mean, exact.mean, atol=1e-6)
    assert np.allclose(scaler.scale, exact.scale, rtol=1e-6)

    aurocs = {}
    for name in ("streamed", "memory"):
        bundle = load_resolved(resolve(f"models:/{name}/1", tmp_path / name))
        detector = TabularDetector(bundle)
        aurocs[name] = roc_auc(labels, detector.select(detector.score(test)))
    print(f"AUROC streamed {aurocs['streamed']:.4f}, in memory {aurocs['memory']:.4f}")
    assert aurocs["memory"] > 0.9
    assert abs(aurocs["streamed"] - aurocs["memory"]) < 0.03, aurocs
