"""A loaded bundle ready to score raw feature matrices."""

from __future__ import annotations

from dataclasses import asdict
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from streamvae.bundle.io import ModelBundle
from streamvae.errors import ModelLoadError, NotCalibratedError, SchemaMismatchError
from streamvae.models import BaseVAE, build_model, config_from_dict
from streamvae.scoring import ScoreSet, concat_score_sets, score_set
from streamvae.thresholds import ThresholdSet

F32 = npt.NDArray[np.float32]


class Scored(NamedTuple):
    """Scores of a batch and the model's reconstruction in raw feature units.

    Attributes:
        scores: every score of the batch.
        expected: ``(n, d)`` float32 reconstruction, in the input's units.
    """

    scores: ScoreSet
    expected: F32


class Detector:
    """Scores raw (unscaled) feature matrices with a bundle's model, deterministically.

    Inference runs in eval mode (``z = mu``) under ``torch.inference_mode``, in chunks of
    ``chunk_size`` rows, so the same row always gets the same score.
    """

    def __init__(self, bundle: ModelBundle, *, device: str = "cpu", chunk_size: int = 8192) -> None:
        self.bundle = bundle
        self.device = torch.device(device)
        self.chunk_size = chunk_size
        self.model: BaseVAE = self._build(bundle).to(self.device).eval()

    @staticmethod
    def _build(bundle: ModelBundle) -> BaseVAE:
        config = config_from_dict(bundle.model_key, bundle.model_config)
        model = build_model(bundle.model_key, config)
        try:
            model.load_state_dict(bundle.state_dict, strict=True)
        except RuntimeError as exc:
            msg = f"weights do not fit model {bundle.model_key!r} {asdict(config)}: {exc}"
            raise ModelLoadError(msg) from exc
        if bundle.preprocess.schema.dim != config.input_dim:
            msg = f"schema has {bundle.preprocess.schema.dim} features, model {config.input_dim}"
            raise ModelLoadError(msg)
        return model

    @property
    def threshold(self) -> ThresholdSet:
        """The thresholds in force.

        Raises:
            NotCalibratedError: the bundle has none.
        """
        if self.bundle.threshold is None:
            msg = "the model has no threshold: run `streamvae calibrate` first"
            raise NotCalibratedError(msg)
        return self.bundle.threshold

    def score(self, raw: F32) -> Scored:
        """Score ``raw (n, d)`` rows in schema order.

        Raises:
            SchemaMismatchError: wrong number of columns.
        """
        dim = self.bundle.preprocess.schema.dim
        if raw.ndim != 2 or raw.shape[1] != dim:
            msg = f"expected a matrix with {dim} feature columns, got shape {raw.shape}"
            raise SchemaMismatchError(msg)
        scaler = self.bundle.preprocess.scaler
        scaled = scaler.transform(np.asarray(raw, dtype=np.float32))
        parts: list[ScoreSet] = []
        recons: list[F32] = []
        with torch.inference_mode():
            for start in range(0, max(scaled.shape[0], 1), self.chunk_size):
                x = torch.from_numpy(scaled[start : start + self.chunk_size]).to(self.device)
                out = self.model(x)
                parts.append(score_set(self.model.elbo_terms(x, out)))
                recons.append(out.recon.float().cpu().numpy())
        expected = scaler.inverse_transform(np.concatenate(recons))
        return Scored(concat_score_sets(parts), expected)

    def select(self, scored: Scored) -> npt.NDArray[np.float64]:
        """The scores the threshold applies to (the bundle's score kind)."""
        return scored.scores.select(self.bundle.score_kind)
