"""One training path for every input kind: each registered version carries its calibration,
and the MLflow pyfunc scores that kind's input like the detector does."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from streamvae.bundle import input_kind
from streamvae.bundle.window import score_points
from streamvae.tracking import load_resolved, resolve
from streamvae.tracking.resolve import CALIBRATION_TAG
from tests.factories import KPI_SERIES, digit_split, make_kpi_history

SERIES = next(iter(KPI_SERIES))

pytestmark = [pytest.mark.mlflow, pytest.mark.timeout(300)]


def _tracking(tracking, name):
    return tracking.model_copy(update={"registered_model": name, "alias": "champion"})


def _recorded(name):
    version = mlflow.MlflowClient().get_model_version(name, "1")
    return version.tags.get(CALIBRATION_TAG)


def test_an_image_version_carries_its_calibration_and_the_pyfunc_scores_images(tracking, tmp_path):
    from streamvae.workflows.images import ImageSettings, train_and_register

    train, held_out = digit_split(16)
    settings = ImageSettings(
        latent_dim=8, channels=(8, 16), epochs=3, device="cpu", percentile=99.0
    )
    outcome = train_and_register(train[:600], settings, _tracking(tracking, "digits"))
    assert outcome.version == "1" and outcome.alias == "champion"
    assert outcome.n_train + outcome.n_calibration <= 600 and outcome.n_calibration > 0
    assert _recorded("digits"), "the image version records its calibration like a tabular one"
    assert outcome.threshold is not None
    assert outcome.threshold.default.model_version == "1", "bound to the registered version"
    bundle = load_resolved(resolve("models:/digits@champion", tmp_path / "b"))
    assert bundle.threshold.default.value == pytest.approx(outcome.threshold.default.value)

    images = held_out[:12]
    out = mlflow.pyfunc.load_model("models:/digits/1").predict(images)
    detector = input_kind(bundle.preprocess).build(bundle)
    assert np.allclose(
        out["score"].to_numpy(), detector.select(detector.score(images.reshape(12, -1)))
    )
    flagged = out["score"].to_numpy() > out["threshold"].to_numpy()
    assert (out["is_anomaly"].to_numpy() == flagged).all()
    assert set(out["severity"]) <= {"normal", "warning", "critical"}


def test_a_kpi_version_carries_its_calibration_and_the_pyfunc_scores_points(tracking, tmp_path):
    from streamvae.workflows.kpi import KpiSettings, train_and_register

    settings = KpiSettings(window_len=16, epochs=3, device="cpu", score_kind="last_point")
    outcome = train_and_register(make_kpi_history(seed=0), settings, _tracking(tracking, "kpis"))
    assert _recorded("kpis"), "the KPI version records its calibration like a tabular one"
    assert outcome.n_train > 0 and outcome.n_calibration > 0
    bundle = load_resolved(resolve("models:/kpis@champion", tmp_path / "b"))

    ts, values = make_kpi_history(n=40, seed=5)[SERIES]
    frame = pd.DataFrame({"series": SERIES, "ts": ts, "value": values})
    out = mlflow.pyfunc.load_model("models:/kpis/1").predict(frame)
    points = score_points(
        input_kind(bundle.preprocess).build(bundle), frame["series"].tolist(), ts, values
    )
    ready = points.status == "ready"
    assert ready.sum() == 40 - 15, "a point scores once its 16-point window is full"
    assert np.allclose(out["score"].to_numpy()[ready], points.score[ready])
