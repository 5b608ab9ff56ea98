"""Outside the stream: one answer per model version, whichever path asks.

After ``calibrate`` records a new threshold on a registered version, the MLflow pyfunc,
``streamvae.load``, ``streamvae score`` and ``thresholds show`` all apply it (the pyfunc used
to keep the threshold of training time). And ``streamvae score`` decides each record as the
service does: same score, threshold, p-value and severity on the service's score topic.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest

import streamvae
from streamvae.stream.tools import produce_all
from streamvae.thresholds import CalibrationSpec
from streamvae.workflows.offline import (
    CalibrationRequest,
    commit_calibration,
    prepare_calibration,
    show_thresholds,
)
from streamvae.workflows.score import score_file
from streamvae.workflows.train import train
from tests.factories import encode, feature_message, feature_names, make_anomalies, make_normal
from tests.integration.kafka_helpers import Topics, read_json, running_service, serve_settings
from tests.integration.test_mlflow_registry import settings_for, write_csv

pytestmark = [pytest.mark.mlflow, pytest.mark.timeout(300)]


def _rows(n_normal: int, n_odd: int, seed: int) -> pl.DataFrame:
    x = np.vstack([make_normal(n_normal, seed=seed), make_anomalies(n_odd, seed=seed + 1) * 0.8])
    frame = pl.DataFrame(x, schema=list(feature_names(x.shape[1])), orient="row")
    return frame.with_columns(pl.Series("id", [f"r{i}" for i in range(x.shape[0])]))


def test_every_path_applies_the_threshold_calibrate_recorded(tracking, tmp_path, monkeypatch):
    import mlflow

    data = write_csv(tmp_path / "train.csv", normal=500)
    outcome = train(settings_for(tracking, data))
    trained = outcome.threshold.default.value
    uri = "models:/fraud/1"
    request = CalibrationRequest(spec=CalibrationSpec(percentile=80.0), holdout_fraction=0.0)
    calibrated = commit_calibration(prepare_calibration(uri, data, request, tracking=tracking))
    value = calibrated.default.value
    assert value < trained, "an 80th-percentile threshold sits below the 99th of training"

    rows = _rows(200, 20, seed=7)
    path = tmp_path / "rows.parquet"
    rows.write_parquet(path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", outcome.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(uri)
    by_pyfunc = pyfunc.predict(rows.drop("id").to_pandas())
    by_api = streamvae.load(uri, tracking_uri=outcome.tracking_uri)
    summary = score_file(uri, path, tmp_path / "out.parquet", tracking=tracking)
    by_cli = pl.read_parquet(tmp_path / "out.parquet")
    shown = show_thresholds(uri, tracking=tracking)[1].default.value

    assert pyfunc.unwrap_python_model().threshold_source == "calibration"
    assert set(by_pyfunc["threshold"]) == {value}
    assert by_api.thresholds.default.value == value
    assert set(by_cli["threshold"].to_list()) == {value}
    assert shown == value and summary.threshold == value
    flagged = by_cli["is_anomaly"].to_numpy()
    assert flagged.sum() > 20, "the lower threshold flags normal rows too"
    assert (by_pyfunc["is_anomaly"].to_numpy() == flagged).all()
    assert (by_api.predict(rows) == flagged).all()
    assert np.allclose(by_pyfunc["p_value"].to_numpy(), by_cli["p_value"].to_numpy())


def test_a_pyfunc_of_a_version_never_recalibrated_keeps_its_training_threshold(
    tracking, tmp_path, monkeypatch
):
    import mlflow

    data = write_csv(tmp_path / "train.csv", normal=500)
    outcome = train(settings_for(tracking, data))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", outcome.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model("models:/fraud/1")
    out = pyfunc.predict(_rows(10, 0, seed=3).drop("id").to_pandas())
    assert set(out["threshold"]) == {outcome.threshold.default.value}


def test_the_version_logs_a_signature_and_input_example_that_admit_its_segment_field(
    tracking, tmp_path, monkeypatch
):
    import mlflow
    from mlflow.models import get_model_info

    data = write_csv(tmp_path / "train.csv", normal=600)
    outcome = train(settings_for(tracking, data))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", outcome.tracking_uri)
    uri = "models:/fraud/1"
    info = get_model_info(uri)
    names = [c for c in pl.read_csv(data).columns if c != "label"]
    assert info.signature.inputs.input_names() == names
    assert {"score", "threshold", "p_value", "severity", "is_anomaly"} <= set(
        info.signature.outputs.input_names()
    )
    assert info.saved_input_example_info["type"] == "dataframe"

    # per-segment thresholds recorded later: the field joins the signature, so MLflow
    # passes it to the pyfunc (it drops columns a signature does not name)
    rows = _rows(300, 0, seed=8)
    merchants = pl.Series("merchant", (["grocery", "travel"] * 200)[: rows.height])
    rows = rows.with_columns(merchants)
    holdout = tmp_path / "holdout.csv"
    rows.write_csv(holdout)
    spec = CalibrationSpec(percentile=95.0, segment_field="merchant", min_segment_size=50)
    request = CalibrationRequest(spec=spec, holdout_fraction=0.0)
    bound = commit_calibration(prepare_calibration(uri, holdout, request, tracking=tracking))
    assert set(bound.segments) == {"grocery", "travel"}
    assert "merchant" in get_model_info(uri).signature.inputs.input_names()
    out = mlflow.pyfunc.load_model(uri).predict(rows.drop("id").to_pandas())
    expected = [bound.segments[m].value for m in rows["merchant"].to_list()]
    assert out["threshold"].tolist() == pytest.approx(expected)
    assert set(out["segment"]) == {"grocery", "travel"}


@pytest.mark.kafka
def test_score_gives_each_record_the_services_verdict(broker, bundle_dir, tmp_path):
    topics = Topics.unique()
    settings = serve_settings(broker, topics, bundle_dir, tmp_path)
    rows = _rows(120, 30, seed=11)
    names = [c for c in rows.columns if c != "id"]
    now = time.time_ns() // 1_000_000
    messages = [
        encode(feature_message(np.asarray([r[n] for n in names]), rid=r["id"], ts=now))
        for r in rows.iter_rows(named=True)
    ]
    with running_service(settings):
        produce_all(broker, topics.input, messages)
        served = read_json(broker, topics.scores, expected=len(messages))
    path = tmp_path / "rows.csv"
    rows.write_csv(path)
    summary = score_file(str(bundle_dir), path, tmp_path / "out.csv", tracking=settings.tracking)
    offline = {r["id"]: r for r in pl.read_csv(tmp_path / "out.csv").iter_rows(named=True)}
    assert summary.rows == len(messages) == len(offline)
    assert 0 < summary.anomalies < len(messages)
    for record in served:
        mine = offline[record["id"]]
        assert mine["score"] == pytest.approx(record["score"], rel=1e-6)
        assert mine["threshold"] == pytest.approx(record["threshold"])
        assert mine["p_value"] == pytest.approx(record["p_value"])
        assert mine["severity"] == record["severity"], record["id"]
