"""Training, registry, aliases, thresholds and pyfunc against a real MLflow store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import polars as pl
import pytest

from streamvae.bundle import TabularDetector, load_bundle
from streamvae.config import TrackingSettings, TrainSettings
from streamvae.errors import ModelLoadError
from streamvae.stream.embedded import free_port
from streamvae.thresholds import CalibrationSpec
from streamvae.tracking import load_resolved, resolve
from streamvae.workflows.offline import (
    CalibrationRequest,
    commit_calibration,
    evaluate,
    prepare_calibration,
    promote,
)
from streamvae.workflows.train import train
from tests.factories import feature_names, make_anomalies, make_normal

pytestmark = [pytest.mark.mlflow, pytest.mark.timeout(300)]


def write_csv(path, normal=600, odd=0, seed=0):
    x = (
        np.vstack([make_normal(normal, seed=seed), make_anomalies(odd, seed=seed + 1)])
        if odd
        else make_normal(normal, seed=seed)
    )
    frame = pl.DataFrame({name: x[:, i] for i, name in enumerate(feature_names(x.shape[1]))})
    frame = frame.with_columns(pl.Series("label", [0] * normal + [1] * odd))
    frame.write_csv(path)
    return path


def settings_for(tracking: TrackingSettings, data, **overrides) -> TrainSettings:
    values = {
        "data": {"path": str(data)},
        "model": {"latent_dim": 2, "hidden_dims": (16,)},
        "training": {"epochs": 15, "device": "cpu"},
        "tracking": tracking.model_dump() | {"registered_model": "fraud"},
    }
    for key, value in overrides.items():
        section, field = key.split("__")
        values.setdefault(section, {})[field] = value
    return TrainSettings.model_validate(values)


def test_train_registers_aliases_and_binds_the_threshold(tracking, tmp_path):
    data = write_csv(tmp_path / "train.csv", normal=500, odd=20)
    outcome = train(settings_for(tracking, data, tracking__alias="champion"))
    assert (outcome.version, outcome.alias) == ("1", "champion")
    assert outcome.n_calibration == 100, "20 % of the 500 normal rows; anomalies are left out"
    assert outcome.n_train == 400
    default = outcome.threshold.default
    assert default.model_name == "fraud" and default.model_version == "1"
    import mlflow

    run = mlflow.get_run(outcome.run_id)
    assert run.data.params["model.beta"] == "1.0"
    assert {"train_loss", "val_loss", "threshold", "best_val_loss"} <= set(run.data.metrics)
    history = mlflow.MlflowClient().get_metric_history(outcome.run_id, "val_loss")
    assert len(history) == outcome.fit.epochs_run

    by_alias = resolve("models:/fraud@champion", tmp_path / "a")
    by_version = resolve("models:/fraud/1", tmp_path / "v")
    by_run = resolve(f"runs:/{outcome.run_id}/model", tmp_path / "r")
    x = make_normal(20, seed=9)
    scores = [
        TabularDetector(load_resolved(r)).score(x).scores.neg_elbo
        for r in (by_alias, by_version, by_run)
    ]
    assert np.array_equal(scores[0], scores[1]) and np.array_equal(scores[0], scores[2])
    loaded = load_resolved(by_alias).threshold
    assert loaded.default.value == pytest.approx(default.value)
    assert np.array_equal(loaded.reference[""], outcome.threshold.reference[""])
    tags = mlflow.MlflowClient().get_model_version("fraud", "1").tags
    assert tags["streamvae.calibration"].startswith("calibrations/v1-")
    assert by_alias.ref.alias == "champion"


def _calibrate(uri, data, tracking, record=True, **spec):
    request = CalibrationRequest(spec=CalibrationSpec(**spec), holdout_fraction=0.0)
    result = prepare_calibration(uri, data, request, tracking=tracking)
    if record:
        commit_calibration(result)
    return result


def test_calibrate_records_the_threshold_on_that_version_only(tracking, tmp_path):
    data = write_csv(tmp_path / "train.csv")
    first = train(settings_for(tracking, data, tracking__alias="champion"))
    second = train(settings_for(tracking, data, training__seed=1))
    holdout = write_csv(tmp_path / "holdout.csv", normal=300, odd=10, seed=5)
    result = _calibrate("models:/fraud/2", holdout, tracking, percentile=95.0)
    assert result.thresholds.default.percentile == 95.0
    assert result.thresholds.default.n_calibration == 300 and result.n_anomalies == 10
    v2 = load_resolved(resolve("models:/fraud/2", tmp_path / "v2")).threshold
    assert v2.default.percentile == 95.0 and v2.default.model_version == "2"
    assert v2.reference[""].size == 300
    champion = load_resolved(resolve("models:/fraud@champion", tmp_path / "c")).threshold
    assert champion.default.model_version == "1"
    assert champion.default.value == pytest.approx(first.threshold.default.value)
    promoted = promote("models:/fraud/2", "champion", tracking=tracking)
    assert promoted.version == "2"
    now = load_resolved(resolve("models:/fraud@champion", tmp_path / "c2")).threshold
    assert now.default.percentile == 95.0, "moving the alias moves model and threshold together"
    assert second.version == "2"


def test_dry_run_records_nothing(tracking, tmp_path):
    data = write_csv(tmp_path / "train.csv")
    outcome = train(settings_for(tracking, data))
    _calibrate("models:/fraud/1", data, tracking, record=False, percentile=90.0)
    again = load_resolved(resolve("models:/fraud/1", tmp_path / "x")).threshold
    assert again.default.percentile == outcome.threshold.default.percentile == 99.0


def test_per_segment_thresholds_and_a_local_bundle(tracking, tmp_path):
    data = write_csv(tmp_path / "train.csv")
    outcome = train(settings_for(tracking, data))
    holdout = tmp_path / "segmented.csv"
    frame = pl.read_csv(write_csv(tmp_path / "h.csv", normal=900, seed=8))
    frame.with_columns(pl.Series("merchant", ["a", "b", "c"] * 300)).write_csv(holdout)
    result = _calibrate(
        f"runs:/{outcome.run_id}/model", holdout, tracking, target_fpr=0.01,
        segment_field="merchant", min_segment_size=250,
    )  # fmt: skip
    assert set(result.thresholds.segments) == {"a", "b", "c"}
    loaded = load_resolved(resolve(f"runs:/{outcome.run_id}/model", tmp_path / "r")).threshold
    assert loaded.segment_field == "merchant"
    assert set(loaded.segments) == {"a", "b", "c"} and set(loaded.reference) == {"", "a", "b", "c"}
    local = resolve(f"runs:/{outcome.run_id}/model", tmp_path / "copy").bundle_dir
    _calibrate(str(local), holdout, tracking, target_fpr=0.02)
    assert load_bundle(local).threshold.default.target_fpr == 0.02


def test_promote_refuses_an_uncalibrated_version(tracking, tmp_path):
    data = write_csv(tmp_path / "train.csv")
    outcome = train(settings_for(tracking, data, data__calibration_fraction=0.0))
    assert outcome.threshold is None
    with pytest.raises(ModelLoadError, match="no calibrated threshold"):
        promote("models:/fraud/1", "champion", tracking=tracking)


def test_unknown_models_and_aliases_are_clear_errors(tracking, tmp_path):
    data = write_csv(tmp_path / "train.csv")
    train(settings_for(tracking, data))
    with pytest.raises(ModelLoadError, match="models:/fraud@nope"):
        resolve("models:/fraud@nope", tmp_path / "x")
    with pytest.raises(ModelLoadError, match="models:/other/1"):
        resolve("models:/other/1", tmp_path / "y")


def test_evaluate_reports_detection_quality(tracking, tmp_path):
    data = write_csv(tmp_path / "train.csv", normal=500)
    train(settings_for(tracking, data, training__epochs=40))
    labelled = write_csv(tmp_path / "test.csv", normal=200, odd=40, seed=11)
    result = evaluate("models:/fraud/1", labelled, tracking=tracking)
    assert result.report.n == 240 and result.report.n_anomalies == 40
    assert result.report.auroc > 0.95
    assert result.report.recall > 0.5
    assert result.report.false_positive_rate < 0.05


def test_pyfunc_scores_a_dataframe_like_the_bundle(tracking, tmp_path):
    import mlflow
    import pandas as pd

    data = write_csv(tmp_path / "train.csv")
    train(settings_for(tracking, data))
    x = make_normal(10, seed=4)
    frame = pd.DataFrame(x, columns=list(feature_names(6)))
    model = mlflow.pyfunc.load_model("models:/fraud/1")
    out = model.predict(frame[list(reversed(frame.columns))])  # column order does not matter
    bundle = load_resolved(resolve("models:/fraud/1", tmp_path / "b"))
    det = TabularDetector(bundle)
    assert np.allclose(out["score"].to_numpy(), det.select(det.score(x)))
    assert out["is_anomaly"].dtype == bool
    logged = list((tmp_path / "b").rglob("*.pkl"))
    assert not logged, "no pickled objects in the logged model"
    assert load_bundle(resolve("models:/fraud/1", tmp_path / "c").bundle_dir).model_key == "vae"


@pytest.mark.slow
def test_against_a_real_mlflow_server(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    port = free_port()
    store = f"sqlite:///{tmp_path / 'server.db'}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store]
    cmd += ["--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not become healthy"
            assert proc.poll() is None, "mlflow server exited"
            time.sleep(0.5)
        tracking = TrackingSettings(
            tracking_uri=uri, work_dir=str(tmp_path / "client"), experiment="srv"
        )
        outcome = train(
            settings_for(tracking, write_csv(tmp_path / "t.csv"), tracking__alias="champion")
        )
        bundle = load_resolved(resolve("models:/fraud@champion", tmp_path / "dl"))
        assert bundle.threshold.default.value == pytest.approx(outcome.threshold.default.value)
        assert not (tmp_path / "client").exists(), "a server URI uses no local store"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
