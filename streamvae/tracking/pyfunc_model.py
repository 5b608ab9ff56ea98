"""MLflow "models from code" entry point: a pyfunc that scores a DataFrame with a bundle.

MLflow loads this file by path (no pickle is stored). ``predict`` takes a DataFrame with
the model's feature columns and returns one row per input: every score, the threshold in
force and ``is_anomaly`` (``score > threshold``).
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext


class StreamVAEPyfunc(PythonModel):
    """Batch scoring of a streamvae bundle through ``mlflow.pyfunc``."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load the bundle directory logged as the ``bundle`` artifact."""
        from streamvae.bundle import Detector, load_bundle
        from streamvae.bundle.window import WindowDetector, WindowPreprocess

        bundle = load_bundle(context.artifacts["bundle"])
        self.kpi = isinstance(bundle.preprocess, WindowPreprocess)
        if self.kpi:
            self.window_detector = WindowDetector(bundle)
        else:
            self.detector = Detector(bundle)

    # No type hints: MLflow would try (and fail) to infer a model signature from them.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        """Score ``model_input`` (DataFrame with the feature columns, or an (n, d) array).

        A KPI model takes a DataFrame of points ``series, ts (epoch ms), value`` in time order
        and returns one row per point (``status`` says which were scored).
        """
        del context, params
        if self.kpi:
            return self._predict_points(model_input)  # type: ignore[no-untyped-call]
        names = list(self.detector.preprocess.schema.names)
        if isinstance(model_input, pd.DataFrame):
            matrix = model_input[names].to_numpy(dtype=np.float32)
        else:
            matrix = np.asarray(model_input, dtype=np.float32)
        scored = self.detector.score(matrix)
        score = self.detector.select(scored)
        out = pd.DataFrame(
            {
                "score": score,
                "neg_elbo": scored.scores.neg_elbo,
                "recon_error": scored.scores.recon_error,
                "kl": scored.scores.kl,
            }
        )
        if scored.scores.neighbour is not None:
            out["neighbour"] = scored.scores.neighbour
        thresholds = self.detector.bundle.threshold
        if thresholds is not None:
            decided = thresholds.decide(score)
            out["threshold"] = decided.thresholds
            out["p_value"] = decided.p_values
            out["is_anomaly"] = decided.severities != ""
            out["severity"] = decided.severities
        return out

    def _predict_points(self, frame):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
        from streamvae.bundle.window import score_points

        series = frame["series"].astype(str).tolist()
        ts = frame["ts"].to_numpy(dtype=np.int64)
        values = frame["value"].to_numpy(dtype=np.float64)
        detector = self.window_detector
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


mlflow.models.set_model(StreamVAEPyfunc())
