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

        self.detector = Detector(load_bundle(context.artifacts["bundle"]))

    # No type hints: MLflow would try (and fail) to infer a model signature from them.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        """Score ``model_input`` (DataFrame with the feature columns, or an (n, d) array)."""
        del context, params
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
        thresholds = self.detector.bundle.threshold
        if thresholds is not None:
            decided = thresholds.decide(score)
            out["threshold"] = decided.thresholds
            out["p_value"] = decided.p_values
            out["is_anomaly"] = decided.severities != ""
            out["severity"] = decided.severities
        return out


mlflow.models.set_model(StreamVAEPyfunc())
