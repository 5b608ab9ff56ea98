"""Spark backfill: a registered version scores a Spark DataFrame like its MLflow pyfunc.

Needs PySpark (the ``spark`` extra, installed by ``make test``) and a Java runtime
(Debian's ``default-jre-headless``, installed by ``make test`` when it can); skipped with
the reason otherwise. Local Spark on loopback, one core.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pandas as pd
import polars as pl
import pytest

from streamvae.config import TrainSettings
from streamvae.workflows.train import train
from tests.factories import feature_names, make_anomalies, make_normal

pyspark = pytest.importorskip("pyspark", reason="PySpark is not installed (make test installs it)")
pytestmark = [
    pytest.mark.mlflow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(shutil.which("java") is None, reason="no Java runtime for local Spark"),
]


@pytest.fixture
def spark(monkeypatch):
    from pyspark.sql import SparkSession

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # workers: this environment
    session = (
        SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    yield session
    session.stop()


def test_a_registered_version_scores_a_spark_dataframe_with_its_thresholds(
    tracking, tmp_path, spark
):
    import mlflow

    from streamvae.tracking import configure
    from streamvae.tracking.spark import score_spark

    names = list(feature_names(6))
    x = make_normal(1500, 6, seed=0)
    pl.DataFrame({n: x[:, j] for j, n in enumerate(names)}).write_csv(tmp_path / "train.csv")
    settings = TrainSettings.model_validate(
        {
            "data": {"path": str(tmp_path / "train.csv")},
            "training": {"epochs": 10, "device": "cpu"},
            "tracking": tracking.model_dump() | {"registered_model": "fraud", "alias": "champion"},
        }
    )
    outcome = train(settings)
    configure(settings.tracking)
    rows = pd.DataFrame(np.vstack([make_normal(40, 6, seed=5), make_anomalies(10, 6, seed=6)]),
                        columns=names)  # fmt: skip
    rows["id"] = [f"r{i}" for i in range(len(rows))]
    frame = spark.createDataFrame(rows[["id", *reversed(names)]])  # any column order

    scored = score_spark(spark, frame, "models:/fraud@champion")
    out = (
        scored.select("id", "streamvae.*")
        .toPandas()
        .sort_values("id", key=lambda s: s.str[1:].astype(int))
    )
    expected = mlflow.pyfunc.load_model("models:/fraud/1").predict(rows[names])
    assert sorted(out["id"]) == sorted(rows["id"]), "other columns pass through"
    assert np.allclose(out["score"].to_numpy(), expected["score"].to_numpy())
    assert set(out["threshold"]) == {outcome.threshold.default.value}
    assert np.allclose(out["p_value"].to_numpy(), expected["p_value"].to_numpy())
    assert (out["is_anomaly"].to_numpy() == expected["is_anomaly"].to_numpy()).all()
    assert out["is_anomaly"].to_numpy()[40:].sum() >= 8, "the anomalies are found"
    assert set(out["severity"]) <= {"normal", "warning", "critical"}
