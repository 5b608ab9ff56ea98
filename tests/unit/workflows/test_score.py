"""Offline scoring: chunks change nothing, bad rows are kept, the API agrees with the file path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

import streamvae
from streamvae.bundle import TabularDetector
from streamvae.cli import app
from streamvae.config import TrackingSettings
from streamvae.data.batches import ChunkWriter, read_chunks
from streamvae.errors import DataError
from streamvae.workflows.score import INVALID_ROW, decide_frame, score_file
from tests.factories import feature_names, make_anomalies, make_normal


@pytest.fixture
def rows() -> pl.DataFrame:
    x = np.vstack([make_normal(90, seed=5), make_anomalies(10, seed=6)])
    frame = pl.DataFrame(x, schema=list(feature_names(x.shape[1])), orient="row")
    return frame.with_columns(
        pl.Series("txn", [f"t{i}" for i in range(x.shape[0])]),
        pl.Series("label", [0] * 90 + [1] * 10),
    )


def _tracking(tmp_path) -> TrackingSettings:
    return TrackingSettings(work_dir=str(tmp_path / "mlflow"))


def test_chunked_scoring_equals_one_chunk_and_keeps_input_order(bundle_dir, rows, tmp_path):
    path = tmp_path / "rows.csv"
    rows.write_csv(path)
    one = score_file(str(bundle_dir), path, tmp_path / "one.parquet", tracking=_tracking(tmp_path))
    many = score_file(
        str(bundle_dir), path, tmp_path / "many.parquet", tracking=_tracking(tmp_path), chunk_rows=7
    )
    a, b = pl.read_parquet(tmp_path / "one.parquet"), pl.read_parquet(tmp_path / "many.parquet")
    floats = [c for c, t in a.schema.items() if t == pl.Float64]
    assert a.drop(floats).equals(b.drop(floats))
    for column in floats:  # a matrix product's rounding depends on its shape (batch size)
        assert np.allclose(a[column].to_numpy(), b[column].to_numpy(), rtol=1e-5), column
    assert a["txn"].to_list() == rows["txn"].to_list()
    assert a.columns[:2] == ["txn", "label"], "every non-feature column is carried, first"
    assert one.rows == many.rows == 100 and one.anomalies == many.anomalies
    detector = TabularDetector(streamvae.load(str(bundle_dir)).bundle)
    expected = detector.select(
        detector.score(rows.select(detector.preprocess.schema.names).to_numpy().astype(np.float32))
    )
    assert np.allclose(a["score"].to_numpy(), expected)
    flagged = a.filter(pl.col("is_anomaly"))
    assert flagged["label"].mean() > 0.5, "the anomalies are what gets flagged"
    assert set(a["severity"]) <= {"normal", "warning", "critical"}


def test_rows_with_missing_or_non_finite_features_are_kept_unscored(bundle_dir, rows, tmp_path):
    name = feature_names(6)[2]
    bad = rows.with_columns(
        pl.when(pl.col("txn") == "t3").then(None)
        .when(pl.col("txn") == "t4").then(float("inf"))
        .otherwise(pl.col(name)).alias(name)
    )  # fmt: skip
    path = tmp_path / "bad.parquet"
    bad.write_parquet(path)
    summary = score_file(str(bundle_dir), path, tmp_path / "out.csv", tracking=_tracking(tmp_path),
                         chunk_rows=16)  # fmt: skip
    out = pl.read_csv(tmp_path / "out.csv")
    assert summary.rows == 100 and summary.invalid == 2
    errors = dict(zip(out["txn"], out["error"], strict=True))
    assert errors["t3"] == errors["t4"] == INVALID_ROW
    assert out.filter(pl.col("txn").is_in(["t3", "t4"]))["score"].is_null().all()
    assert out.filter(~pl.col("txn").is_in(["t3", "t4"]))["score"].is_not_null().all()


def test_npz_and_empty_inputs(bundle_dir, tmp_path):
    x = make_normal(30, seed=2)
    np.savez(tmp_path / "rows.npz", X=x, feature_names=np.array(feature_names(6)))
    summary = score_file(str(bundle_dir), tmp_path / "rows.npz", tmp_path / "out.parquet",
                         tracking=_tracking(tmp_path), chunk_rows=8)  # fmt: skip
    out = pl.read_parquet(tmp_path / "out.parquet")
    assert summary.rows == 30 and out["row"].to_list() == list(range(30))
    pl.DataFrame({n: pl.Series([], dtype=pl.Float64) for n in feature_names(6)}).write_csv(
        tmp_path / "empty.csv"
    )
    empty = score_file(str(bundle_dir), tmp_path / "empty.csv", tmp_path / "empty.parquet",
                       tracking=_tracking(tmp_path))  # fmt: skip
    assert empty.rows == 0
    assert "score" in pl.read_parquet(tmp_path / "empty.parquet").columns


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("rows.txt", "a,b\n1,2\n", "unsupported input"),
        ("rows.csv", "x1,x2\n1,2\n", "feature column(s) ['x0', 'x3', 'x4', 'x5'] not found"),
        ("rows.csv", "x0,x1,x2,x3,x4,x5\n1,2,3,4,5,oops\n", "'x5' has non-numeric type"),
    ],
)
def test_bad_inputs_are_one_line_errors_naming_the_problem(
    bundle_dir, tmp_path, name, content, message
):
    (tmp_path / name).write_text(content)
    result = CliRunner().invoke(
        app, ["score", str(bundle_dir), str(tmp_path / name), str(tmp_path / "out.parquet"),
              "--work-dir", str(tmp_path / "w")],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_a_missing_output_folder_or_suffix_is_refused(tmp_path):
    with pytest.raises(DataError, match="output folder"):
        ChunkWriter(tmp_path / "nope" / "out.csv")
    with pytest.raises(DataError, match="unsupported output"):
        ChunkWriter(tmp_path / "out.json")
    with pytest.raises(DataError, match="does not exist"):
        list(read_chunks(tmp_path / "missing.csv", 10))


def test_the_api_takes_polars_pandas_and_arrays_alike(bundle_dir, rows):
    model = streamvae.load(str(bundle_dir))
    names = list(model.features)
    matrix = rows.select(names).to_numpy()
    by_polars = model.score(rows)
    assert np.array_equal(by_polars, model.score(rows.to_pandas()))
    assert np.array_equal(by_polars, model.score(matrix))
    decided = model.decide(rows)
    assert np.array_equal(model.predict(rows), decided["is_anomaly"].to_numpy().astype(np.int8))
    assert np.array_equal(model.p_values(rows), decided["p_value"].to_numpy())
    explained = model.explain(rows, top_features=2)
    assert len(explained) == rows.height and all(len(e) == 2 for e in explained)
    first = explained[0][0]
    assert first["feature"] in names and first["value"] == pytest.approx(rows[first["feature"]][0])
    assert first["contribution"] >= explained[0][1]["contribution"]
    with pytest.raises(DataError, match=r"\(n, 6\) array"):
        model.score(matrix[:, :3])
    with pytest.raises(DataError, match="DataFrame or a numpy array"):
        model.score([[1.0] * 6])


def test_decide_frame_refuses_a_missing_carried_column(bundle_dir, rows):
    model = streamvae.load(str(bundle_dir))
    with pytest.raises(DataError, match="to carry not found"):
        decide_frame(model.detector, model.thresholds, rows, carry=["nope"])


@pytest.mark.mlflow
def test_fit_trains_and_registers_from_a_dataframe(tmp_path, monkeypatch, rows):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    normal = pd.DataFrame(make_normal(300, seed=1), columns=feature_names(6))
    outcome = streamvae.fit(
        normal,
        overrides=[
            f"tracking.work_dir={tmp_path / 'mlflow'}", "tracking.registered_model=api-test",
            "training.epochs=3", "model.score_kind=neg_elbo", "calibration.percentile=95",
        ],
    )  # fmt: skip
    assert outcome.version == "1" and outcome.n_train == 240
    model = streamvae.load("models:/api-test/1", tracking_uri=outcome.tracking_uri)
    assert model.thresholds.default.value == outcome.threshold.default.value
    assert model.predict(rows).shape == (100,)
