"""MLflow "models from code" entry point: a pyfunc that scores a DataFrame with a bundle.

MLflow loads this file by path (no pickle is stored). ``predict`` takes a DataFrame with
the model's feature columns and returns one row per input: the verdict columns of
``streamvae score`` (score, threshold, p-value, severity, is_anomaly, top features) plus
the component scores.

Thresholds: MLflow hands the pyfunc only the model's files, not the URI it was loaded by,
so ``load_context`` reads the model's run id from its ``MLmodel`` file and applies the
calibration ``streamvae calibrate`` recorded for the registered version logged by that run
(:func:`~streamvae.tracking.thresholds_for_run`), as the service, the CLI and
``streamvae.load`` do. Only a model never calibrated after training keeps the threshold of
its training run; when the registry cannot be reached the pyfunc says so in the log and
``threshold_source`` is ``"training (registry unreachable)"``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.pyfunc.model import PythonModel, PythonModelContext

logger = logging.getLogger(__name__)


def _run_id_of(bundle_dir: Path) -> str | None:
    """The run that logged the model whose ``artifacts/bundle`` is ``bundle_dir``."""
    mlmodel = bundle_dir.parent.parent / "MLmodel"
    if not mlmodel.is_file():
        return None
    run_id = (yaml.safe_load(mlmodel.read_text()) or {}).get("run_id")
    return str(run_id) if run_id else None


class StreamVAEPyfunc(PythonModel):
    """Batch scoring of a streamvae bundle through ``mlflow.pyfunc``, for every input kind."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load the bundle directory logged as the ``bundle`` artifact, and its detector."""
        from streamvae.bundle import input_kind, load_bundle
        from streamvae.errors import ModelLoadError
        from streamvae.tracking.resolve import thresholds_for_run

        bundle_dir = Path(context.artifacts["bundle"])
        bundle = load_bundle(bundle_dir)
        self.threshold_source = "training"
        run_id = _run_id_of(bundle_dir)
        if run_id is not None:
            try:
                recorded = thresholds_for_run(run_id)
            except ModelLoadError as exc:
                logger.warning("thresholds of the training run apply: %s", exc)
                self.threshold_source = "training (registry unreachable)"
            else:
                if recorded is not None:
                    bundle = bundle.with_threshold(recorded)
                    self.threshold_source = "calibration"
        self.kind = input_kind(bundle.preprocess).name
        self.detector = input_kind(bundle.preprocess).build(bundle)

    # ``model_input: pd.DataFrame`` is the one hint MLflow neither warns about (it does without
    # any) nor infers a schema from (it would, and fail, for other hints): the columns vary
    # by model and input kind.
    def predict(self, context, model_input: pd.DataFrame, params=None):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        """Score ``model_input``; one output row per input row (per point, per image).

        - feature vectors: a DataFrame with the feature columns (or an ``(n, d)`` array);
        - KPI windows: a DataFrame of points ``series, ts (epoch ms), value`` in time order
          (``status`` says which were scored);
        - images: an ``(n, C, H, W)``, ``(n, H, W)`` or ``(n, pixels)`` array in [0, 1], or
          a DataFrame of ``n`` rows of pixels.
        """
        del context, params
        return PREDICTORS[self.kind](self.detector, model_input)  # type: ignore[no-untyped-call]


def _predict_rows(detector, model_input):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    from streamvae.bundle.verdicts import decide_rows

    names = list(detector.preprocess.schema.names)
    if isinstance(model_input, pd.DataFrame):
        matrix = model_input[names].to_numpy(dtype=np.float32)
    else:
        matrix = np.asarray(model_input, dtype=np.float32)
    thresholds = detector.bundle.threshold
    scored = detector.score(matrix)
    out = pd.DataFrame(
        {
            "score": detector.select(scored),
            "neg_elbo": scored.scores.neg_elbo,
            "recon_error": scored.scores.recon_error,
            "kl": scored.scores.kl,
        }
    )
    if scored.scores.neighbour is not None:
        out["neighbour"] = scored.scores.neighbour
    if thresholds is not None:
        segments = None
        field = thresholds.segment_field
        if field is not None and isinstance(model_input, pd.DataFrame) and field in model_input:
            segments = [None if v is None else str(v) for v in model_input[field].tolist()]
        decided = decide_rows(detector, matrix, thresholds, segments=segments)
        verdicts = decided.to_frame(names).drop("score").to_pandas()
        out = pd.concat([out, verdicts], axis=1)
    return out


def _predict_points(detector, frame):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    from streamvae.bundle.window import score_points

    series = frame["series"].astype(str).tolist()
    ts = frame["ts"].to_numpy(dtype=np.int64)
    values = frame["value"].to_numpy(dtype=np.float64)
    points = score_points(detector, series, ts, values)
    out = pd.DataFrame(
        {"status": points.status, "score": points.score, "expected": points.expected}
    )
    thresholds = detector.bundle.threshold
    if thresholds is not None:
        field = thresholds.segment_field
        segments = None
        if field == "series":
            segments = series
        elif field == "group":
            segments = [detector.preprocess.group(s) for s in series]
        decided = thresholds.decide(np.nan_to_num(points.score, nan=-np.inf), segments)
        scored = points.status == "ready"
        out["threshold"] = decided.thresholds
        out["is_anomaly"] = (decided.severities != "") & scored
    return out


def _predict_images(detector, model_input):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    pixels = detector.preprocess.shape.pixels
    images = np.asarray(model_input, dtype=np.float32).reshape(-1, pixels)
    scores = detector.score(images)
    score = detector.select(scores)
    out = pd.DataFrame(
        {"score": score, "neg_elbo": scores.neg_elbo, "recon_error": scores.recon_error,
         "kl": scores.kl}
    )  # fmt: skip
    thresholds = detector.bundle.threshold
    if thresholds is not None:
        decided = thresholds.decide(score)
        out["threshold"] = decided.thresholds
        out["p_value"] = decided.p_values
        out["severity"] = np.where(decided.severities == "", "normal", decided.severities)
        out["is_anomaly"] = decided.severities != ""
    return out


PREDICTORS = {"tabular": _predict_rows, "window": _predict_points, "image": _predict_images}
"""How each input kind's bundle scores a pyfunc input (keys: ``streamvae.bundle.INPUT_KINDS``)."""


mlflow.models.set_model(StreamVAEPyfunc())
