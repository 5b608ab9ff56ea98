"""Data-parallel training under torchrun: 2 gloo processes on loopback match 1 process.

Both runs train the shipped tabular default (fixed epochs) on the same data; rank 0 alone
logs, calibrates and registers, so the 2-process store holds one run and one version, and
its model detects as well as the 1-process one (within noise: the shards see the batches
in another order). The same holds for a directory of Parquet files streamed, each rank
reading its own share: there the scaler, the split and the calibration sample are exactly
those of one process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest

from streamvae.bundle import TabularDetector
from streamvae.config import TrackingSettings
from streamvae.scoring import roc_auc
from streamvae.tracking import configure, load_resolved, resolve
from tests.factories import feature_names, make_anomalies, make_normal

pytestmark = [pytest.mark.mlflow, pytest.mark.timeout(600)]

TORCHRUN = Path(sys.executable).with_name("torchrun")


def _train(data: Path, store: Path, processes: int, *settings: str) -> str:
    args = [
        "-m", "streamvae", "train", "--data", str(data), "--tracking-uri",
        f"sqlite:///{store / 'mlflow.db'}", "-s", "training.epochs=20", *settings,
        "-s", "training.device=cpu", "-s", f"tracking.work_dir={store}", "--quiet",
    ]  # fmt: skip
    if processes == 1:
        command = [sys.executable, *args]
    else:
        command = [str(TORCHRUN), "--standalone", f"--nproc-per-node={processes}", *args]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=540)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside python")
def test_two_gloo_processes_train_like_one_and_only_rank_0_registers(tmp_path):
    names = feature_names(6)
    x = make_normal(3000, 6, seed=0)
    pl.DataFrame({n: x[:, i] for i, n in enumerate(names)}).write_csv(tmp_path / "train.csv")
    test = np.vstack([make_normal(400, 6, seed=9), make_anomalies(100, 6, seed=10)])
    labels = np.r_[np.zeros(400), np.ones(100)]

    aurocs, stores, val_loss = {}, {}, {}
    for processes in (1, 2):
        store = tmp_path / f"store-{processes}"
        stores[processes] = store
        out = _train(tmp_path / "train.csv", store, processes)
        assert ("processes (torchrun)" in out) == (processes > 1)
        # both URIs: an earlier test may have set a registry URI for the process
        configure(TrackingSettings(tracking_uri=f"sqlite:///{store / 'mlflow.db'}"))
        bundle = load_resolved(resolve("models:/streamvae-tabular/1", tmp_path / f"b{processes}"))
        detector = TabularDetector(bundle)
        aurocs[processes] = roc_auc(labels, detector.select(detector.score(test)))
        (only,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
        val_loss[processes] = only.data.metrics["best_val_loss"]

    uri = f"sqlite:///{stores[2] / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    versions = client.search_model_versions("name='streamvae-tabular'")
    assert len(versions) == 1, "rank 0 alone registers"
    run = client.get_run(versions[0].run_id)
    assert run.data.params["distributed.world_size"] == "2"
    assert run.data.metrics["threshold"] > 0, "rank 0 calibrated"
    runs = client.search_runs([run.info.experiment_id])
    assert len(runs) == 1, "rank 1 logged nothing"
    print(f"AUROC 1 / 2 processes {aurocs[1]:.4f} / {aurocs[2]:.4f}; best val loss "
          f"{val_loss[1]:.4f} / {val_loss[2]:.4f}")  # fmt: skip
    assert aurocs[1] > 0.9
    assert abs(aurocs[2] - aurocs[1]) < 0.03, aurocs
    # the same model quality on held-out normals, within what another batch order moves it
    assert abs(val_loss[2] - val_loss[1]) < 0.05 * abs(val_loss[1]), val_loss


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside python")
def test_two_gloo_processes_stream_their_own_share_of_parquet_like_one(tmp_path):
    names = feature_names(6)
    parts = tmp_path / "parts"
    parts.mkdir()
    for i, n in enumerate((2500, 900, 1600)):  # uneven files: the shares cross file edges
        x = make_normal(n, 6, seed=i)
        pl.DataFrame({c: x[:, j] for j, c in enumerate(names)}).write_parquet(
            parts / f"part-{i}.parquet", row_group_size=500
        )
    test = np.vstack([make_normal(400, 6, seed=9), make_anomalies(100, 6, seed=10)])
    labels = np.r_[np.zeros(400), np.ones(100)]

    bundles, aurocs, runs, counts = {}, {}, {}, {}
    for processes in (1, 2):
        store = tmp_path / f"store-{processes}"
        out = _train(parts, store, processes, "-s", "data.batch_rows=700")
        assert ("processes (torchrun)" in out) == (processes > 1)
        (counts[processes],) = [ln for ln in out.splitlines() if "calibration rows" in ln]
        uri = f"sqlite:///{store / 'mlflow.db'}"
        configure(TrackingSettings(tracking_uri=uri))
        bundle = load_resolved(resolve("models:/streamvae-tabular/1", tmp_path / f"b{processes}"))
        bundles[processes] = bundle
        detector = TabularDetector(bundle)
        aurocs[processes] = roc_auc(labels, detector.select(detector.score(test)))
        client = mlflow.MlflowClient(uri, registry_uri=uri)
        assert len(client.search_model_versions("name='streamvae-tabular'")) == 1
        (runs[processes],) = mlflow.search_runs(search_all_experiments=True, output_format="list")

    one, two = bundles[1], bundles[2]
    assert one.meta["streamed"] is True and two.meta["streamed"] is True
    assert runs[2].data.params["distributed.world_size"] == "2"
    # the statistics are merged from the shares: the one-process scaler, split and counts
    s1, s2 = one.preprocess.scaler, two.preprocess.scaler
    assert np.allclose(s1.mean, s2.mean, rtol=0, atol=1e-9)
    assert np.allclose(s1.scale, s2.scale, rtol=1e-9)
    assert one.meta["n_train"] == two.meta["n_train"]
    assert counts[1] == counts[2], "the same training and calibration rows"
    m1, m2 = runs[1].data.metrics, runs[2].data.metrics
    print(f"streamed AUROC 1 / 2 processes {aurocs[1]:.4f} / {aurocs[2]:.4f}; threshold "
          f"{m1['threshold']:.3f} / {m2['threshold']:.3f}")  # fmt: skip
    assert aurocs[1] > 0.9
    assert abs(aurocs[2] - aurocs[1]) < 0.03, aurocs
    assert abs(m2["best_val_loss"] - m1["best_val_loss"]) < 0.05 * abs(m1["best_val_loss"])
