"""The research model family end to end: CLI training, MLflow registry, diagnostics, serving.

The conditional case is the one that needs every layer: context columns in the training
CSV, the context schema in the bundle, ``"context"`` in each Kafka message (validated, and
dead-lettered when wrong), and contextual anomalies that only a conditional model can see.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from streamvae.stream.tools import produce_all
from tests.factories import encode, feature_names, make_contextual
from tests.integration.kafka_helpers import Topics, read_json, read_raw, running_service
from tests.integration.kafka_helpers import serve_settings as kafka_serve_settings
from tests.integration.test_cli import invoke, workdir  # noqa: F401 - the fixture

pytestmark = [pytest.mark.mlflow, pytest.mark.timeout(400)]
D = 6
CONTEXT_SETTINGS = (
    "--set",
    "data.context_columns=[hour]",
    "--set",
    "data.categorical_columns=[channel]",
)


FEATURES = f"data.feature_columns=[{','.join(feature_names(D))}]"


def _frame(x: np.ndarray, context: pl.DataFrame, labels: list[int]) -> pl.DataFrame:
    features = pl.DataFrame({n: x[:, i] for i, n in enumerate(feature_names(D))})
    return pl.concat([features, context], how="horizontal").with_columns(pl.Series("label", labels))


def _data(workdir):  # noqa: F811
    x, ctx = make_contextual(1200, D, seed=0)
    _frame(x, ctx, [0] * 1200).write_csv(workdir / "train.csv")
    x_n, ctx_n = make_contextual(300, D, seed=5)
    x_a, ctx_a = make_contextual(60, D, seed=6, swap_context=True)
    test = pl.concat([_frame(x_n, ctx_n, [0] * 300), _frame(x_a, ctx_a, [1] * 60)])
    test.write_csv(workdir / "test.csv")
    return workdir / "train.csv", workdir / "test.csv", test


def _train(config, data, *extra) -> str:
    code, out = invoke("train", "-c", config, "--data", data, "--quiet", *extra)
    assert code == 0, out
    return out


def test_dcvae_sees_contextual_anomalies_a_vae_cannot_and_serves_with_context(
    workdir,  # noqa: F811
    broker,
):
    config = workdir / "c.yaml"
    config.write_text(
        "model:\n  latent_dim: 4\n  hidden_dims: [32]\n"
        "training:\n  epochs: 60\n  patience: 0\n  device: cpu\n"
    )
    train_csv, test_csv, test = _data(workdir)
    _train(config, train_csv, "--set", FEATURES, "--set", "tracking.registered_model=plain")
    _train(
        config,
        train_csv,
        *CONTEXT_SETTINGS,
        "--set",
        "model.name=dcvae",
        "--set",
        "model.learn_variance=true",
        "--set",
        "training.beta_schedule.kind=cyclical",
        "--set",
        "tracking.registered_model=contextual",
        "--alias",
        "champion",
    )
    aurocs = {}
    for name in ("plain", "contextual"):
        code, out = invoke("evaluate", f"models:/{name}/1", test_csv, "--json")
        assert code == 0, out
        aurocs[name] = json.loads(out)["auroc"]
    # the swapped-context rows are normal rows of another channel: invisible without context
    print("AUROC on contextual anomalies", aurocs)
    assert aurocs["plain"] < 0.7 < 0.9 < aurocs["contextual"], aurocs

    code, out = invoke("diagnose", "models:/contextual/1", test_csv, "--json", "--log")
    assert code == 0, out
    diag = json.loads(out)
    assert diag["latent distance normal vs abnormal"] > 0
    assert 1 <= int(diag["active dims"].split()[0]) <= 4
    assert diag["AUROC neg_elbo"] > 0.9 and diag["AUROC is_nll"] > 0.9
    import mlflow

    run = mlflow.get_run(mlflow.MlflowClient().get_model_version("contextual", "1").run_id)
    assert {"diag_mmd_prior", "diagnose_latent_distance", "gamma", "beta"} <= set(run.data.metrics)
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "beta")
    assert len(history) == 60 and min(m.value for m in history) < 0.5 < max(
        m.value for m in history
    )

    # serve the registered champion from Kafka: context travels in each message
    topics = Topics.unique()
    settings = kafka_serve_settings(
        broker, topics, "models:/contextual@champion", workdir / ".streamvae"
    )
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"score_topic": topics.scores})}
    )
    rows = test.to_dicts()
    good = [
        encode(
            {
                "id": f"r{i}",
                "features": {n: row[n] for n in feature_names(D)},
                "context": {"hour": row["hour"], "channel": row["channel"], "merchant": "m1"},
            }
        )
        for i, row in enumerate(rows)
    ]
    first = {n: rows[0][n] for n in feature_names(D)}
    bad = {
        "schema_mismatch": [
            encode({"features": first}),  # no context at all
            encode({"features": first, "context": {"hour": 3}}),  # a field missing
            encode({"features": first, "context": {"hour": 3, "channel": "fax"}}),  # unseen
        ],
        "invalid_record": [encode({"features": first, "context": {"hour": "3", "channel": "web"}})],
        "non_finite": [encode({"features": first, "context": {"hour": 1e300, "channel": "web"}})],
    }
    bad_values = [v for values in bad.values() for v in values]
    with running_service(settings):
        produce_all(broker, topics.input, good + bad_values)
        scores = read_json(broker, topics.scores, expected=len(good))
        dead = read_raw(broker, topics.dead, expected=len(bad_values))
    assert {s["id"] for s in scores} == {f"r{i}" for i in range(len(rows))}
    assert all(s["model"] == {"name": "contextual", "version": "1"} for s in scores)
    reasons = sorted(dict(m.headers)["error"].decode() for m in dead)
    assert reasons == sorted(r for r, values in bad.items() for _ in values)
    by_id = {s["id"]: s for s in scores}
    alerted = {i for i, row in enumerate(rows) if by_id[f"r{i}"]["severity"] != "normal"}
    abnormal = {i for i, row in enumerate(rows) if row["label"] == 1}
    # at the 99th-percentile threshold: about half the contextual anomalies, ~1 % false alarms
    assert len(alerted & abnormal) >= 0.4 * len(abnormal)
    assert len(alerted - abnormal) <= 0.03 * (len(rows) - len(abnormal))


@pytest.mark.parametrize(
    ("family", "extra"),
    [
        ("sparse_vae", ("--set", "model.latent_dim=6", "--set", FEATURES)),
        (
            "vae",
            (
                "--set",
                "model.learn_variance=true",
                "--set",
                "model.score_kind=is_nll",
                "--set",
                FEATURES,
            ),
        ),
        ("cvae", (*CONTEXT_SETTINGS, "--set", "model.score_kind=bpd")),
    ],
)
def test_each_family_trains_registers_and_evaluates_from_the_cli(workdir, family, extra):  # noqa: F811
    config = workdir / "c.yaml"
    config.write_text(
        "model:\n  hidden_dims: [32]\n  is_samples: 16\ntraining:\n  epochs: 25\n  device: cpu\n"
    )
    train_csv, test_csv, _ = _data(workdir)
    out = _train(config, train_csv, "--set", f"model.name={family}", *extra)
    assert "streamvae-tabular v1" in out
    code, out = invoke("evaluate", "models:/streamvae-tabular/1", test_csv, "--json")
    assert code == 0, out
    assert json.loads(out)["n"] == 360
    code, out = invoke("thresholds", "show", "models:/streamvae-tabular/1")
    assert code == 0, out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "model.name=cvae", "--set", FEATURES), "is conditioned on context"),
        (CONTEXT_SETTINGS, "reads no context"),
        (("--set", "model.name=nope", "--set", FEATURES), "unknown model 'nope'"),
        (("--set", "training.beta_schedule.kind=sawtooth"), "beta_schedule.kind"),
        (("--set", "model.width=0"), "model.width"),
        (("--set", "model.score_kind=elbo"), "model.score_kind"),
    ],
)
def test_bad_family_settings_are_one_line_errors(workdir, args, message):  # noqa: F811
    train_csv, _, _ = _data(workdir)
    code, out = invoke("train", "--data", train_csv, "--quiet", *args)
    assert code == 2, out
    assert message in out and len(out.strip().splitlines()) == 1, out
