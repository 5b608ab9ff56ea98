"""The Typer CLI end to end on a local MLflow store (CliRunner, real workflows)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from streamvae.cli import app
from tests.factories import feature_names, make_anomalies, make_normal

pytestmark = [pytest.mark.mlflow, pytest.mark.timeout(300)]
runner = CliRunner()


def _csv(path, normal, odd=0, seed=0):
    x = (
        np.vstack([make_normal(normal, seed=seed), make_anomalies(odd, seed=seed + 1)])
        if odd
        else make_normal(normal, seed=seed)
    )
    frame = pl.DataFrame({n: x[:, i] for i, n in enumerate(feature_names(6))})
    frame.with_columns(pl.Series("label", [0] * normal + [1] * odd)).write_csv(path)
    return str(path)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_train_calibrate_evaluate_promote(workdir):
    config = workdir / "c.yaml"
    config.write_text(
        "model:\n  latent_dim: 2\n  hidden_dims: [16]\ntraining:\n  epochs: 20\n  device: cpu\n"
    )
    data = _csv(workdir / "train.csv", 600)
    code, out = invoke("train", "-c", config, "--data", data, "--set", "model.beta=2.0", "--quiet")
    assert code == 0, out
    assert "streamvae-tabular v1" in out and "expected alerts per 1,000 normal" in out

    holdout = _csv(workdir / "holdout.csv", 400, seed=3)
    code, out = invoke("calibrate", "models:/streamvae-tabular/1", holdout, "--percentile", "99.5")
    assert code == 0, out
    assert "recorded" in out and "99.5" in out and "400" in out

    labelled = _csv(workdir / "test.csv", 200, 30, seed=7)
    code, out = invoke("evaluate", "models:/streamvae-tabular/1", labelled, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["n"] == 230 and report["auroc"] > 0.9

    code, out = invoke("promote", "models:/streamvae-tabular/1", "--alias", "champion")
    assert code == 0, out
    assert "models:/streamvae-tabular@champion -> version 1" in out
    code, out = invoke("evaluate", "models:/streamvae-tabular@champion", labelled)
    assert code == 0 and "auroc" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--set", "training.epochs=0"], "training.epochs"),
        (["train", "--set", "nonsense"], "bad --set 'nonsense'"),
        (["train", "--data", "missing.csv"], "'missing.csv' does not exist"),
        (["train", "-c", "nope.yaml"], "'nope.yaml' does not exist"),
        (["calibrate", "models:/nope@champion", "x.csv"], "models:/nope@champion"),
        (["calibrate", "models:/", "x.csv"], "bad model URI 'models:/'"),
        (["evaluate", "not/a/path", "x.csv"], "'not/a/path'"),
        (["promote", "runs:/abc"], "registered model URI"),
        (["serve", "--set", "poll_timeout_ms=-1"], "poll_timeout_ms"),
        (["serve", "--model-uri", "models:/ghost@champion"], "models:/ghost@champion"),
        (["demo", "--percentile", "100"], "bad --percentile 100"),
        (["--log-level", "LOUD", "demo"], "bad --log-level 'LOUD'"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(workdir, args, message):
    code, out = invoke(*args)
    assert code == 2, out
    lines = [line for line in out.strip().splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert message in lines[0]


def test_nan_in_scoring_data_is_a_one_line_error(workdir):
    data = _csv(workdir / "train.csv", 600)
    assert invoke("train", "--data", data, "--set", "training.epochs=1", "--quiet")[0] == 0
    bad = workdir / "bad.csv"
    text = (workdir / "train.csv").read_text().splitlines()
    cells = text[5].split(",")
    cells[2] = "NaN"
    bad.write_text("\n".join([*text[:5], ",".join(cells), *text[6:]]) + "\n")
    code, out = invoke("evaluate", "models:/streamvae-tabular/1", bad)
    assert code == 2, out
    assert "1 row(s) hold NaN or Inf in ['x2']" in out


def test_train_refuses_a_percentile_the_calibration_split_cannot_support(workdir):
    data = _csv(workdir / "small.csv", 200)
    code, out = invoke("train", "--data", data, "--set", "training.epochs=1", "--quiet")
    assert code == 2
    assert "needs at least 100 held-out normal rows" in out


@pytest.mark.parametrize("command", ["train", "calibrate", "evaluate", "promote", "serve", "demo"])
def test_every_command_has_help_with_an_example(command):
    code, out = invoke(command, "--help")
    assert code == 0
    assert "Example:" in out
