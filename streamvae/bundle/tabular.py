"""Feature-vector bundles: the schema and scalers, and a detector over raw feature rows."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from streamvae.bundle.model import load_model, thresholds_in_force
from streamvae.data import ContextSchema, FeatureSchema, StandardScaler, Table, context_matrix
from streamvae.errors import ModelLoadError, SchemaMismatchError
from streamvae.models import BaseVAE, importance_nll, latent_noise
from streamvae.scoring import Diagnostics, ScoreSet, concat_score_sets, diagnose, score_set
from streamvae.thresholds import ThresholdSet
from streamvae.types import SAMPLED_SCORE_KINDS

if TYPE_CHECKING:  # pragma: no cover
    from streamvae.bundle.io import ModelBundle

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class TabularPreprocess:
    """Feature schema and scaler of a tabular model, and the context of a conditional one.

    Attributes:
        schema: the feature names, in model order.
        scaler: standardisation of the features.
        context: the context fields a conditional model reads, or ``None``.
        context_scaler: standardisation of the numeric context fields, or ``None``.
    """

    KIND: ClassVar[str] = "tabular"

    schema: FeatureSchema
    scaler: StandardScaler
    context: ContextSchema | None = None
    context_scaler: StandardScaler | None = None

    def __post_init__(self) -> None:
        numeric = 0 if self.context is None else len(self.context.numeric)
        scaled = 0 if self.context_scaler is None else len(self.context_scaler.mean)
        if numeric != scaled:
            msg = f"context has {numeric} numeric field(s) but its scaler {scaled}"
            raise ValueError(msg)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The feature columns, in model order."""
        return self.schema.names

    def input_change(self, old: TabularPreprocess) -> str | None:
        """How these rows would be read differently from ``old``'s, or ``None`` if the same."""
        if old.schema.names != self.schema.names:
            added = sorted(set(self.schema.names) - set(old.schema.names))
            removed = sorted(set(old.schema.names) - set(self.schema.names))
            what = f"added {added[:5]}, removed {removed[:5]}" if added or removed else "reordered"
            return f"feature schema changed ({what})"
        if old.context != self.context:
            return "context fields changed"
        return None

    def condition(self, raw: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Raw ``(n, width)`` context (numeric values, category codes) -> model condition.

        Raises:
            ValueError: no context schema, or the wrong number of columns.
        """
        if self.context is None:
            msg = "this model reads no context"
            raise ValueError(msg)
        if raw.ndim != 2 or raw.shape[1] != self.context.width:
            msg = f"expected {self.context.width} context column(s), got shape {raw.shape}"
            raise ValueError(msg)
        out = np.array(raw, dtype=np.float32, copy=True)
        m = len(self.context.numeric)
        if m and self.context_scaler is not None:
            out[:, :m] = self.context_scaler.transform(out[:, :m])
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        values: dict[str, Any] = {
            "kind": self.KIND,
            "schema": self.schema.to_dict(),
            "scaler": self.scaler.to_dict(),
        }
        if self.context is not None:
            values["context"] = self.context.to_dict()
        if self.context_scaler is not None:
            values["context_scaler"] = self.context_scaler.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TabularPreprocess:
        """Inverse of :meth:`to_dict`."""
        if values.get("kind") != cls.KIND:
            msg = f"unsupported preprocessing kind {values.get('kind')!r}"
            raise ValueError(msg)
        schema = FeatureSchema.from_dict(values["schema"])
        scaler = StandardScaler.from_dict(values["scaler"])
        if len(scaler.mean) != schema.dim:
            msg = f"scaler has {len(scaler.mean)} features, schema {schema.dim}"
            raise ValueError(msg)
        context = ContextSchema.from_dict(values["context"]) if "context" in values else None
        context_scaler = (
            StandardScaler.from_dict(values["context_scaler"])
            if "context_scaler" in values
            else None
        )
        return cls(schema, scaler, context, context_scaler)


class Scored(NamedTuple):
    """Scores of a batch and the model's reconstruction in raw feature units.

    Attributes:
        scores: every score of the batch.
        expected: ``(n, d)`` float32 reconstruction, in the input's units.
    """

    scores: ScoreSet
    expected: F32


class TabularDetector:
    """Scores raw (unscaled) feature matrices with a bundle's model, deterministically.

    Inference runs in eval mode (``z = mu``) under ``torch.inference_mode``, in chunks of
    ``chunk_size`` rows, so the same row always gets the same score. The importance-sampled
    scores use K fixed latent draws (seed 0) shared by every row, so they are deterministic
    too.
    """

    def __init__(self, bundle: ModelBundle, *, device: str = "cpu", chunk_size: int = 8192) -> None:
        if not isinstance(bundle.preprocess, TabularPreprocess):
            kind = bundle.preprocess.KIND
            msg = f"not a feature-vector bundle (its preprocessing is {kind!r}): build its "
            msg += "detector with streamvae.bundle.input_kind(bundle.preprocess).build(bundle)"
            raise ModelLoadError(msg)
        self.bundle = bundle
        self.preprocess: TabularPreprocess = bundle.preprocess
        self.device = torch.device(device)
        self.chunk_size = chunk_size
        self.model: BaseVAE = self._build(bundle).to(self.device).eval()
        self._noise = latent_noise(bundle.is_samples, self.model.latent_dim, 0, self.device)

    def probe(self) -> npt.NDArray[np.float64]:
        """The score of a typical row: the scaler's mean (and a zero context)."""
        row = np.asarray(self.preprocess.scaler.mean, np.float32)[None, :]
        context = self.preprocess.context
        zeros = None if context is None else np.zeros((1, context.width), np.float32)
        return self.select(self.score(row, zeros if self.conditional else None))

    @property
    def conditional(self) -> bool:
        """Whether every row needs its context."""
        return self.model.conditional

    @staticmethod
    def _build(bundle: ModelBundle) -> BaseVAE:
        if not isinstance(bundle.preprocess, TabularPreprocess):  # pragma: no cover - checked
            msg = "not a tabular bundle"
            raise ModelLoadError(msg)
        model, config = load_model(bundle.model_key, bundle.model_config, bundle.state_dict)
        if bundle.preprocess.schema.dim != config.input_dim:
            msg = f"schema has {bundle.preprocess.schema.dim} features, model {config.input_dim}"
            raise ModelLoadError(msg)
        context = bundle.preprocess.context
        if model.conditional != (context is not None):
            msg = f"model {bundle.model_key!r} and the bundle's context schema do not match"
            raise ModelLoadError(msg)
        if context is not None and (
            len(context.numeric) != config.cond_numeric
            or context.cardinalities != tuple(config.cond_categories)
        ):
            msg = "the bundle's context schema does not fit the model's condition"
            raise ModelLoadError(msg)
        return model

    @property
    def threshold(self) -> ThresholdSet:
        """The thresholds in force.

        Raises:
            NotCalibratedError: the bundle has none.
        """
        return thresholds_in_force(self.bundle.threshold)

    def score(self, raw: F32, context: F32 | None = None, *, sampled: bool | None = None) -> Scored:
        """Score ``raw (n, d)`` rows in schema order.

        With the bundle's neighbour index, the ``neighbour`` and ``fused`` scores are
        computed too.

        Args:
            raw: the features, in raw units.
            context: ``(n, width)`` raw context (numeric values, category codes) of a
                conditional model; ignored otherwise.
            sampled: compute the importance-sampled scores (``is_nll``, ``bpd``); default:
                when the bundle's score kind is one of them.

        Raises:
            SchemaMismatchError: wrong number of columns, or a missing context.
        """
        dim = self.preprocess.schema.dim
        if raw.ndim != 2 or raw.shape[1] != dim:
            msg = f"expected a matrix with {dim} feature columns, got shape {raw.shape}"
            raise SchemaMismatchError(msg)
        cond = self._condition(context, raw.shape[0])
        if sampled is None:
            sampled = self.bundle.score_kind in SAMPLED_SCORE_KINDS
        scaler = self.preprocess.scaler
        # C order whatever the caller's layout: a column-major matrix (pandas' and polars'
        # to_numpy give one) reaches other GEMM kernels, whose rounding moved scores by 2e-4
        scaled = np.ascontiguousarray(scaler.transform(np.asarray(raw, dtype=np.float32)))
        parts: list[ScoreSet] = []
        recons: list[F32] = []
        distances: list[npt.NDArray[np.float64]] = []
        view_parts: list[list[npt.NDArray[np.float64]]] = []
        fusion = self.bundle.fusion
        with torch.inference_mode():
            for start in range(0, max(scaled.shape[0], 1), self.chunk_size):
                stop = start + self.chunk_size
                x = torch.from_numpy(scaled[start:stop]).to(self.device)
                c = None if cond is None else torch.from_numpy(cond[start:stop]).to(self.device)
                out = self.model(x, c)
                nll = importance_nll(self.model, x, c, self._noise).nll if sampled else None
                parts.append(score_set(self.model.elbo_terms(x, out), nll))
                recons.append(out.recon.float().cpu().numpy())
                if fusion is not None:
                    distances.append(fusion.index.distances(x).double().cpu().numpy())
                    view_parts.append(fusion.view_distances(x))
        expected = scaler.inverse_transform(np.concatenate(recons))
        scores = concat_score_sets(parts)
        precision = self._feature_precision()
        if precision is not None:
            scores = replace(scores, per_feature=scores.per_feature * precision)
        if fusion is not None:
            views = [np.concatenate(chunks) for chunks in zip(*view_parts, strict=True)]
            scores = fusion.complete(scores, np.concatenate(distances), view_distances=views)
        return Scored(scores, expected)

    def _feature_precision(self) -> npt.NDArray[np.float64] | None:
        """``1 / gamma_j`` of a decoder with one learned variance per feature, else ``None``.

        Alerts explain a record by its per-feature errors; with per-feature variances the
        error that matters is the one weighed by the feature's precision (a deviation in a
        feature the normals hold tightly counts more), as it is in the NLL.
        """
        config = getattr(self.model, "config", None)
        if not getattr(config, "per_feature_variance", False):
            return None
        log_gamma = getattr(self.model, "effective_log_gamma", None)
        if not isinstance(log_gamma, torch.Tensor):
            return None
        precision: npt.NDArray[np.float64] = np.exp(-log_gamma.detach().double().cpu().numpy())
        return precision

    def _condition(self, context: F32 | None, n: int) -> F32 | None:
        if not self.conditional:
            return None
        if context is None:
            names = self.preprocess.context.names if self.preprocess.context else ()
            msg = f"model {self.bundle.model_key!r} needs each row's context {list(names)}"
            raise SchemaMismatchError(msg)
        if context.shape[0] != n:
            msg = f"{context.shape[0]} context rows for {n} feature rows"
            raise SchemaMismatchError(msg)
        try:
            return self.preprocess.condition(context)
        except ValueError as exc:
            raise SchemaMismatchError(str(exc)) from exc

    def context_of(self, table: Table) -> F32 | None:
        """The raw context matrix of ``table`` for this model (``None`` if it reads none).

        Raises:
            SchemaMismatchError: the table lacks context columns the model needs.
        """
        schema = self.preprocess.context
        if schema is None:
            return None
        if table.context is None:
            msg = f"the data has no context columns; the model needs {list(schema.names)}"
            raise SchemaMismatchError(msg)
        return context_matrix(schema, table.context)

    def score_table(self, table: Table, *, sampled: bool | None = None) -> Scored:
        """Score every row of ``table`` (features and, for conditional models, context)."""
        return self.score(table.features, self.context_of(table), sampled=sampled)

    def diagnose(self, table: Table, *, seed: int = 0) -> Diagnostics:
        """Latent diagnostics on ``table`` (see :func:`streamvae.scoring.diagnose`).

        With labels, the latent distance between its normal and abnormal rows is included
        and the other figures use the normal rows.
        """
        scaled = self.preprocess.scaler.transform(table.features)
        raw_context = self.context_of(table)
        cond = self._condition(raw_context, len(table))
        return diagnose(
            self.model,
            torch.from_numpy(scaled).to(self.device),
            None if cond is None else torch.from_numpy(cond).to(self.device),
            table.labels,
            seed=seed,
        )

    def select(self, scored: Scored) -> npt.NDArray[np.float64]:
        """The scores the threshold applies to (the bundle's score kind)."""
        return scored.scores.select(self.bundle.score_kind)
