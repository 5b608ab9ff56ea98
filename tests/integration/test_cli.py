"""The Typer CLI end to end on a local MLflow store (CliRunner, real workflows)."""

from __future__ import annotations

import json
from pathlib import Path

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
    from streamvae.cli import common

    for console in (common.console, common.err_console):  # no wrapping inside table cells
        monkeypatch.setattr(console, "width", 240)
    return tmp_path


def invoke(*args, input=None):
    result = runner.invoke(app, [str(a) for a in args], input=input)
    return result.exit_code, result.output


def invoke_stdout(*args):
    """Exit code and standard output alone (what a pipe into ``jq`` reads)."""
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout


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
    code, out = invoke(
        "calibrate",
        "models:/streamvae-tabular/1",
        holdout,
        "--percentile",
        "99.5",
        "--yes",
        "--holdout",
        "0",
    )
    assert code == 0, out
    assert "recorded for streamvae-tabular v1" in out and "99.5" in out and "400" in out

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


def test_every_result_prints_as_json_and_models_lists_the_registry(workdir):
    config = workdir / "c.yaml"
    config.write_text("model:\n  latent_dim: 2\n  hidden_dims: [16]\ntraining:\n  epochs: 5\n")
    data = _csv(workdir / "train.csv", 600)
    code, out = invoke_stdout("train", "-c", config, "--data", data, "--json")
    assert code == 0, out
    trained = json.loads(out)
    assert trained["model"] == "streamvae-tabular v1" and trained["threshold"] > 0
    code, out = invoke_stdout("train", "-c", config, "--data", data, "--json")
    assert code == 0 and json.loads(out)["model"] == "streamvae-tabular v2"

    holdout = _csv(workdir / "holdout.csv", 400, seed=3)
    uri = "models:/streamvae-tabular/1"
    code, out = invoke_stdout(
        "calibrate", uri, holdout, "--percentile", "95", "--holdout", "0", "--yes", "--json"
    )
    assert code == 0, out
    calibrated = json.loads(out)
    assert calibrated["recorded"] is True and calibrated["segments"] == {}
    code, out = invoke_stdout("thresholds", "show", "models:/streamvae-tabular/1", "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert (
        shown["threshold"] == calibrated["threshold"] and shown["model"] == "streamvae-tabular v1"
    )
    code, out = invoke_stdout("promote", uri, "--alias", "champion", "--json")
    assert code == 0 and json.loads(out) == {"model": "streamvae-tabular", "alias": "champion",
                                             "version": "1"}  # fmt: skip

    code, out = invoke_stdout("models", "--json")
    assert code == 0, out
    listed = {v["version"]: v for v in json.loads(out)}
    assert set(listed) == {"1", "2"}
    assert listed["1"]["aliases"] == ["champion"] and listed["2"]["aliases"] == []
    assert listed["1"]["threshold"] == calibrated["threshold"]
    assert listed["1"]["score_kind"] == "fused" and listed["1"]["calibrated_at"]
    assert listed["2"]["threshold"] == json.loads(out)[0]["threshold"]  # newest first
    code, out = invoke("models", "streamvae-tabular")
    assert code == 0 and "champion" in out and "fused" in out
    code, out = invoke("models", "nope")
    assert code == 2 and "nope" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--set", "training.epochs=0"], "training.epochs"),
        (["train", "--set", "nonsense"], "bad --set 'nonsense'"),
        (["train", "--data", "missing.csv"], "'missing.csv' does not exist"),
        (["train", "-c", "nope.yaml"], "'nope.yaml' does not exist"),
        (["calibrate", "models:/nope@champion", "x.csv"], "models:/nope@champion"),
        (["calibrate", "models:/", "x.csv"], "bad model URI 'models:/'"),
        (
            ["calibrate", "m", "x.csv", "--alerts-per-day", "3"],
            "alerts_per_day needs records_per_second",
        ),
        (["calibrate", "m", "x.csv", "--fpr", "2"], "invalid --fpr: Input should be less than 1"),
        (["train", "--set", "model.betta=2"], "unknown setting model.betta (did you mean 'beta'?)"),
        (["train", "--set", "model.name=vea"], "unknown model 'vea' (did you mean 'vae'?)"),
        (["serve", "--metrics-port", "-5"], "invalid --metrics-port"),
        (["calibrate", "m", "x.csv", "--severity-bands", "loud"], "bad --severity-bands 'loud'"),
        (["calibrate", "m", "x.csv", "--severity-bands", "loud=1"], "severity_bands.0.0"),
        (["calibrate", "m", "x.csv", "--severity-bands", "critical=0.5,warning=0.1"], "ascending"),
        (["evaluate", "not/a/path", "x.csv"], "'not/a/path'"),
        (["promote", "runs:/abc"], "registered model URI"),
        (["serve", "--set", "poll_timeout_ms=-1"], "poll_timeout_ms"),
        (
            ["serve", "--bootstrap-servers", "127.0.0.1:1", "-s", "kafka.connect_timeout_ms=300"],
            "cannot connect to Kafka at '127.0.0.1:1'",
        ),
        (["demo", "--percentile", "100"], "bad --percentile 100"),
        (["evaluate"], "needs MODEL_URI and DATA (or --nab DIR)"),
        (["evaluate", "m", "--nab", "."], "give no MODEL_URI or DATA"),
        (["evaluate", "--nab", "."], "is not a NAB directory"),
        (["bench", "nab", ".", "--model", "ghost"], "bad --model 'ghost'"),
        (["bench", "nab", "."], "is not a NAB directory"),
        (["train-kpi", "missing.csv"], "KPI history 'missing.csv' does not exist"),
        (["calibrate", "models:/m@a", "missing.csv"], "data 'missing.csv' does not exist"),
        (["train", "--data", "missing.csv"], "data file 'missing.csv' does not exist"),
        (["promote", "./"], "promote needs a registered model URI"),
        (["train-kpi", "x.csv", "--threshold-by", "host"], "got 'host'"),
        (["train-kpi", "x.csv", "--model", "ghost"], "unknown model 'ghost'"),
        (["--log-level", "LOUD", "demo"], "bad --log-level 'LOUD'"),
        (["train-images", "missing.npz"], "image data 'missing.npz' does not exist"),
        (["train-images", "x.npz", "--model", "vae"], "model 'vae' is not for image data"),
        (["train-kpi", "x.csv", "--model", "conv2d_vae"], "(train it with train-images)"),
        (["train-images", "x.npz", "--score-kind", "last_point"], "not 'last_point'"),
        (["demo", "--kind", "video"], "bad --kind 'video'"),
        (["train-kpi", "x.csv", "--param", "nonsense"], "bad --param 'nonsense'"),
        (["train", "--data", "none/*.parquet"], "no Parquet file at 'none/*.parquet'"),
        (
            ["train-kpi", "x.csv", "--model", "conv1d_vae", "--param", "kernel_size=6"],
            "kernel_size must be an odd number",
        ),
        (["train-images", "x.npz", "--param", "kernel_size=3"], "takes no param"),
        (
            ["train", "-s", "data.builtin=cardio", "-s", "model.params={kernel_size: 3}"],
            "model 'vae' takes no param ['kernel_size']",
        ),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(workdir, args, message):
    for name in ("x.csv", "x.npz"):  # inputs that exist: the option is what is wrong
        (workdir / name).write_bytes(b"")
    code, out = invoke(*args)
    assert code == 2, out
    lines = [line for line in out.strip().splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert message in lines[0]


def test_serve_names_a_missing_model_once_the_broker_answers(workdir, broker):
    code, out = invoke(
        "serve", "--bootstrap-servers", broker, "--model-uri", "models:/ghost@champion",
        "--set", "kafka.check_topics=false",
    )  # fmt: skip
    assert code == 2, out
    lines = [line for line in out.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "models:/ghost@champion" in lines[0], out


@pytest.fixture
def trained(workdir):
    data = _csv(workdir / "train.csv", 600)
    code, out = invoke("train", "--data", data, "--set", "training.epochs=10", "--quiet")
    assert code == 0, out
    return workdir


def test_calibrate_shows_the_operators_view_before_recording(trained):
    holdout = _csv(trained / "holdout.csv", 2000, seed=4)
    args = (
        "calibrate",
        "models:/streamvae-tabular/1",
        holdout,
        "--alerts-per-day",
        "50",
        "--records-per-second",
        "0.5",
    )
    code, out = invoke(*args, input="n\n")
    assert code == 1, out
    for shown in (
        "threshold interval",
        "90% bootstrap",
        "false-positive rate interval",
        "expected alerts per day at 0.5 records/s",
        "false-positive rate on 400 held-out normals",
        "conformal",
        "Record these thresholds",
    ):
        assert shown in out, shown
    assert "not recorded" in out
    code, out = invoke("thresholds", "show", "models:/streamvae-tabular/1")
    assert code == 0 and "percentile 99" in out, (
        "refusing left the training-time threshold in force"
    )
    code, out = invoke(*args, "--yes")
    assert code == 0, out
    code, out = invoke(
        "thresholds", "show", "models:/streamvae-tabular/1", "--records-per-second", "0.5"
    )
    assert code == 0, out
    assert "conformal" in out and "target rate 0.001157" in out
    assert "calibration scores kept (p-values)" in out and "1600" in out
    assert "50" in out


def test_train_and_calibrate_write_a_report_logged_with_the_version(trained):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{trained / '.streamvae' / 'mlflow.db'}")
    run_id = client.get_model_version("streamvae-tabular", "1").run_id

    def logged():
        return sorted(a.path for a in client.list_artifacts(run_id, "calibration_report"))

    stem = "calibration_report/streamvae-tabular-v1-calibration"
    assert logged() == [f"{stem}.html", f"{stem}.png"]  # train wrote one at training time
    png = trained / ".streamvae" / "reports" / "streamvae-tabular-v1-calibration.png"
    before = png.stat().st_mtime_ns
    holdout = _csv(trained / "holdout.csv", 1500, 60, seed=6)
    code, out = invoke_stdout(
        "calibrate", "models:/streamvae-tabular/1", holdout, "--labels", "--tail",
        "--fpr", "0.001", "--yes", "--json", "--report-dir", trained / "rep",
    )  # fmt: skip
    assert code == 0, out
    result = json.loads(out)
    page = trained / "rep" / "streamvae-tabular-v1-calibration.html"
    assert result["report html"] == str(page) and result["recorded"] is True
    html = page.read_text(encoding="utf-8")
    assert "<svg" in html and "pot (target rate 0.001)" in html and "Pareto tail fit" in html
    assert png.stat().st_mtime_ns == before  # --report-dir: the default place is untouched
    downloaded = client.download_artifacts(run_id, f"{stem}.html", str(trained / "dl"))
    assert "Pareto tail fit" in Path(downloaded).read_text(encoding="utf-8")  # the new one
    code, out = invoke("calibrate", "models:/streamvae-tabular/1", holdout, "--dry-run",
                       "--no-report")  # fmt: skip
    assert code == 0 and "calibration report" not in out, out


def test_calibrate_tail_segments_and_labels(trained):
    frame = pl.read_csv(_csv(trained / "h.csv", 1500, 60, seed=5))
    frame = frame.with_columns(pl.Series("merchant", (["a", "b"] * 780)[: frame.height]))
    path = trained / "seg.csv"
    frame.write_csv(path)
    code, out = invoke(
        "calibrate",
        "models:/streamvae-tabular/1",
        path,
        "--fpr",
        "0.00001",
        "--tail",
        "--dry-run",
        "--bootstrap",
        "30",
    )
    assert code == 0, out
    assert "EXTRAPOLATED" in out and "xi" in out and "dry run" in out
    code, out = invoke(
        "calibrate",
        "models:/streamvae-tabular/1",
        path,
        "--fpr",
        "0.01",
        "--segment",
        "merchant",
        "--min-segment-size",
        "100",
        "--dry-run",
        "--bootstrap",
        "0",
    )
    assert code == 0, out
    assert "per-segment thresholds (merchant)" in out
    code, out = invoke(
        "calibrate",
        "models:/streamvae-tabular/1",
        path,
        "--target-recall",
        "0.9",
        "--dry-run",
        "--bootstrap",
        "0",
    )
    assert code == 0, out
    assert "target_recall" in out and "precision / recall on the labelled data" in out


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


def test_train_refuses_a_fused_score_too_few_rows_could_calibrate(workdir):
    data = _csv(workdir / "tiny.csv", 40)
    code, out = invoke(
        "train", "--data", data, "--set", "data.calibration_fraction=0", "--set",
        "training.epochs=1", "--quiet",
    )  # fmt: skip
    assert code == 2, out
    assert "model.score_kind=fused" in out and "at least 10 held-out training rows" in out
    code, out = invoke(
        "train", "--data", data, "--set", "data.calibration_fraction=0", "--set",
        "training.epochs=1", "--set", "model.score_kind=neg_elbo", "--quiet",
    )  # fmt: skip
    assert code == 0, out


def test_train_refuses_a_percentile_the_calibration_split_cannot_support(workdir):
    data = _csv(workdir / "small.csv", 200)
    code, out = invoke("train", "--data", data, "--set", "training.epochs=1", "--quiet")
    assert code == 2
    assert "needs at least 100 held-out normal rows" in out
    # the run it had started is marked FAILED, with the reason, and the error says which
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / '.streamvae' / 'mlflow.db'}")
    (run,) = client.search_runs(client.get_experiment_by_name("streamvae").experiment_id)
    assert run.info.status == "FAILED"
    assert "needs at least 100 held-out normal rows" in run.data.tags["streamvae.failure"]
    assert f"(MLflow run {run.info.run_id} marked FAILED)" in out


@pytest.mark.parametrize(
    "command",
    [
        "train",
        "train-kpi",
        "train-images",
        "calibrate",
        "thresholds show",
        "evaluate",
        "promote",
        "serve",
        "demo",
    ],
)
def test_every_command_has_help_with_an_example(command):
    code, out = invoke(*command.split(), "--help")
    assert code == 0
    assert "Example:" in out


def test_train_kpi_registers_a_window_model_with_per_series_thresholds(workdir):
    from streamvae.bundle.window import WindowPreprocess
    from streamvae.config import TrackingSettings
    from streamvae.tracking import configure, load_resolved, resolve
    from tests.factories import make_kpi_history

    frames = [
        pl.DataFrame({"host": [name] * ts.size, "time": ts, "cpu": values})
        for name, (ts, values) in make_kpi_history().items()
    ]
    pl.concat(frames).write_parquet(workdir / "history.parquet")
    code, out = invoke(
        "train-kpi", "history.parquet", "--series-column", "host", "--ts-column", "time",
        "--value-column", "cpu", "--window-len", "16", "--epochs", "5", "--percentile", "99",
        "--alias", "champion", "--quiet",
    )  # fmt: skip
    assert code == 0, out
    assert "streamvae-kpi v1" in out and "3 per series" in out
    assert (workdir / ".streamvae" / "reports" / "streamvae-kpi-v1-calibration.png").is_file()
    configure(TrackingSettings())
    bundle = load_resolved(resolve("models:/streamvae-kpi@champion", workdir / "m"))
    assert isinstance(bundle.preprocess, WindowPreprocess)
    assert bundle.threshold is not None and set(bundle.threshold.segments) == set(
        make_kpi_history()
    )
    points = pl.concat(frames).rename({"host": "series", "time": "ts", "cpu": "value"})
    assert bundle.score_kind == "stream" and bundle.preprocess.stream is not None
    points.tail(900).write_csv(workdir / "recent.csv")
    code, out = invoke_stdout("score", "models:/streamvae-kpi@champion", "recent.csv",
                              "verdicts.csv", "--json")  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["rows"] == 900
    verdicts = pl.read_csv(workdir / "verdicts.csv")
    assert {"status", "score", "expected", "threshold", "is_anomaly"} <= set(verdicts.columns)
    # the series' stream state starts empty: its first points warm up, the rest are scored
    statuses = verdicts.group_by("status").len().to_dict(as_series=False)
    counts = dict(zip(statuses["status"], statuses["len"], strict=True))
    minimum = bundle.preprocess.stream.likelihood_min
    assert minimum < counts["warming_up"] < 200 and counts["ready"] == 900 - counts["warming_up"]


def test_train_images_registers_an_image_model_from_a_png_folder(workdir):
    from PIL import Image

    from streamvae.bundle.image import ImagePreprocess
    from streamvae.config import TrackingSettings
    from streamvae.data.images import builtin_digits
    from streamvae.tracking import configure, load_resolved, resolve

    images, _ = builtin_digits(16)
    folder = workdir / "digits"
    folder.mkdir()
    for i, image in enumerate(images[:400]):
        Image.fromarray((image[0] * 255).round().astype("uint8")).save(folder / f"{i:04d}.png")
    code, out = invoke("train-images", "digits", "--epochs", "1", "--quiet")
    assert code == 2 and "needs at least 100 calibration records" in out, "one line, no traceback"
    code, out = invoke(
        "train-images", "digits", "--latent-dim", "8", "--epochs", "2", "--alias", "champion",
        "--percentile", "95", "--quiet",
    )  # fmt: skip
    assert code == 0, out
    assert "streamvae-images v1" in out and "400 x (1, 16, 16)" in out
    assert (workdir / ".streamvae" / "reports" / "streamvae-images-v1-calibration.png").is_file()
    configure(TrackingSettings())
    bundle = load_resolved(resolve("models:/streamvae-images@champion", workdir / "m"))
    assert isinstance(bundle.preprocess, ImagePreprocess)
    assert bundle.threshold is not None and bundle.threshold.default.percentile == 95.0
    assert set(bundle.preprocess.pixel_thresholds) == {"rec_error", "elbo_grad"}
    assert bundle.threshold is not None
    code, out = invoke_stdout("score", "models:/streamvae-images@champion", "digits",
                              "verdicts.parquet", "--json")  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["rows"] == 400
    assert pl.read_parquet(workdir / "verdicts.parquet")["image"][0] == "0000.png"


def test_a_28x28_image_model_trains_unpadded_and_evaluates_with_pixel_auroc(workdir):
    from streamvae.data.images import builtin_digits, paste_anomalies

    small, digits = builtin_digits(24)
    images = np.pad(small, ((0, 0), (0, 0), (2, 2), (2, 2)))  # 28x28: not a multiple of 16
    order = np.random.default_rng(0).permutation(len(images))
    train, held = order[:1200], order[1200:1400]
    np.savez(workdir / "normal.npz", X=(images[train] * 255).round().astype(np.uint8))
    code, out = invoke(
        "train-images", "normal.npz", "--epochs", "40", "--alias", "champion", "--quiet"
    )
    assert code == 0, out
    assert "1200 x (1, 28, 28)" in out
    pasted, masks, _ = paste_anomalies(images[held[100:]], seed=1)
    test = np.concatenate([images[held[:100]], pasted])
    np.savez(
        workdir / "test.npz", X=(test * 255).round().astype(np.uint8),
        y=np.r_[np.zeros(100), np.ones(100)].astype(np.int64),
        masks=np.concatenate([np.zeros((100, 28, 28), bool), masks]),
    )  # fmt: skip
    code, out = invoke("evaluate", "models:/streamvae-images@champion", "test.npz", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["n"] == 200 and report["n_anomalies"] == 100
    # pasted noise squares, blobs and digit pieces: local defects, the fused default's
    # weaker case (README: about 0.8 fully trained; 0.74 after these 40 epochs)
    assert report["auroc"] > 0.7, report
    assert report["map_kind"] == "rec_error" and report["pixel_auroc"] > 0.8, report
    assert 0.0 <= report["false_positive_rate"] <= 0.1, report
    # digit labels: name the normal class (here every digit is "normal", so 0 vs the rest
    # only checks the plumbing), or be told how to
    np.savez(workdir / "digits.npz", X=images[held], y=digits[held])
    code, out = invoke("evaluate", "models:/streamvae-images@champion", "digits.npz")
    assert code == 2 and "--normal-label" in out, out
    code, out = invoke(
        "evaluate", "models:/streamvae-images@champion", "digits.npz", "--normal-label", "0"
    )
    assert code == 0 and "pixel_auroc" not in out, out
    np.savez(workdir / "small.npz", X=np.zeros((4, 16, 16), np.uint8), y=[0, 1, 0, 1])
    code, out = invoke("evaluate", "models:/streamvae-images@champion", "small.npz")
    assert code == 2 and "images are 1x16x16 (CxHxW), the model takes 1x28x28" in out, out


def test_bench_nab_prints_profiles_and_writes_nab_results(workdir):
    from tests.factories import KPI_INTERVAL_MS, kpi_values

    data = workdir / "nab" / "synthetic"
    data.mkdir(parents=True)
    n = 1500
    values = kpi_values("cpu.web-1", 0, n)
    values[1200:1210] += 40.0
    stamps = np.datetime64("2024-01-01T00:00:00") + np.arange(n) * np.timedelta64(
        KPI_INTERVAL_MS, "ms"
    )
    text = [str(t).replace("T", " ") for t in stamps]
    pl.DataFrame({"timestamp": text, "value": values}).write_csv(data / "spiky.csv")
    windows = {"synthetic/spiky.csv": [[text[1190], text[1230]]]}
    (workdir / "nab" / "windows.json").write_text(json.dumps(windows))
    code, out = invoke(
        "bench", "nab", "nab", "--write-results", "results", "--model", "vae",
        "--epochs", "10", "--ensemble", "1", "--diagnose", "--json",
    )  # fmt: skip
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    diagnosis = report.pop("diagnosis")["synthetic/spiky.csv"]
    assert set(report) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert report["standard"]["files"]["synthetic/spiky.csv"]["tp"] == 1
    # the spike at 1200 sits 10 points into the window [1190, 1230]: found a quarter in
    assert diagnosis["first_detection"] == [pytest.approx(0.25, abs=0.1)]
    assert diagnosis["inside"][0] > diagnosis["outside"][2]  # the window's peak beats outside
    assert diagnosis["false_positives"] == report["standard"]["files"]["synthetic/spiky.csv"]["fp"]
    written = pl.read_csv(workdir / "results" / "streamvae" / "synthetic" / "streamvae_spiky.csv")
    assert written.columns == ["timestamp", "value", "anomaly_score", "label"]
    assert written.height == n and written["label"].sum() == 41
    assert written["anomaly_score"].min() >= 0.0 and written["anomaly_score"].max() <= 1.0
