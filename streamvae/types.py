"""Frozen payload and result dataclasses shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

ScoreKind = Literal[
    "neg_elbo",
    "recon_error",
    "kl",
    "recon_nll",
    "is_nll",
    "bpd",
    "neighbour",
    "fused",
    "last_point",
    "window_neg_elbo",
    "stream",
]
"""The per-sample scores a detector can threshold; higher is always more anomalous.

``neg_elbo``: reconstruction NLL + KL (the default); ``recon_error``: summed squared error;
``kl``: the KL term; ``recon_nll``: the decoder NLL alone; ``is_nll``: importance-sampled
negative log-likelihood (K samples); ``bpd``: ``is_nll`` in bits per input dimension;
``neighbour``: distance to the k-th nearest normal training row (scaled units); ``fused``:
``neg_elbo`` and ``neighbour`` fused by their calibrated tail probabilities (the tabular
default, see :mod:`streamvae.scoring.fusion`).
KPI windows: ``last_point``: how far the newest point lies from the model's expectation of
it, in the series' robust units; ``window_neg_elbo``: the masked negative ELBO of the window;
``stream``: an anomaly score in [0, 1] with the same meaning on every series, from what the
series has shown so far (the default, see :mod:`streamvae.scoring.stream_scores`).
"""

SCORE_KINDS: tuple[ScoreKind, ...] = (
    "neg_elbo",
    "recon_error",
    "kl",
    "recon_nll",
    "is_nll",
    "bpd",
    "neighbour",
    "fused",
)
WINDOW_SCORE_KINDS: tuple[ScoreKind, ...] = ("stream", "last_point", "window_neg_elbo")
"""Scores of KPI window models (the tabular kinds above are for feature vectors)."""
ALL_SCORE_KINDS: tuple[ScoreKind, ...] = SCORE_KINDS + WINDOW_SCORE_KINDS
SAMPLED_SCORE_KINDS: tuple[ScoreKind, ...] = ("is_nll", "bpd")
"""Scores that need K decoder passes per record (computed only when asked for)."""
NEIGHBOUR_SCORE_KINDS: tuple[ScoreKind, ...] = ("neighbour", "fused")
"""Scores that need the bundle's neighbour index (tabular models trained with one)."""

Severity = Literal["warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("warning", "critical")

DeadLetterReason = Literal[
    "invalid_json",
    "invalid_record",
    "schema_mismatch",
    "non_finite",
    "too_large",
    "invalid_encoding",
    "duplicate_point",
    "out_of_order",
    "invalid_image",
    "out_of_range",
    "invalid_avro",
    "processing_error",
]
DEAD_LETTER_REASONS: tuple[DeadLetterReason, ...] = (
    "invalid_json",
    "invalid_record",
    "schema_mismatch",
    "non_finite",
    "too_large",
    "invalid_encoding",
    "duplicate_point",
    "out_of_order",
    "invalid_image",
    "out_of_range",
    "invalid_avro",
    "processing_error",
)


class InboundMessage(NamedTuple):
    """One consumed Kafka record, as the service sees it (no client types leak out).

    A ``NamedTuple``, not a frozen dataclass: one is built per consumed record, and a
    tuple is several times cheaper to create.
    """

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class OutboundMessage(NamedTuple):
    """One record to produce: an alert, a score, a dead letter or a state snapshot.

    A ``NamedTuple`` like :class:`InboundMessage`: with a score topic, one is built per record.

    ``partition`` pins the record to a partition (state snapshots go to the input's
    partition number); ``None`` lets the producer's partitioner choose by key.
    """

    topic: str
    value: bytes | None  # None: a tombstone (a state topic's evicted series)
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class ModelRef:
    """Which registered model produced a score (travels in every alert)."""

    name: str
    version: str
    alias: str | None = None
    uri: str = ""


@dataclass(frozen=True, slots=True)
class RunStats:
    """What one bounded service run did (returned by the runner, printed by the CLI)."""

    messages: int = 0
    consumed: int = 0
    scored: int = 0
    alerted: int = 0
    dead_lettered: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    unscored: dict[str, int] = field(default_factory=dict)  # KPI points not scored, by status
    elapsed_s: float = 0.0
    active_s: float = 0.0  # from the first message received to the end (no group join)


MODEL_KINDS: dict[str, frozenset[str]] = {
    "vae": frozenset({"tabular", "window"}),
    "sparse_vae": frozenset({"tabular", "window"}),
    "cvae": frozenset({"tabular", "window"}),
    "dcvae": frozenset({"tabular", "window"}),
    "conv1d_vae": frozenset({"window"}),
    "conv1d_cvae": frozenset({"window"}),
    "conv2d_vae": frozenset({"image"}),
    "conv2d_vae_stem": frozenset({"image"}),
}
"""The input kinds each registered model family serves (``ModelSpec.kinds`` reads it here,
where the command line can list families without importing torch; a contract test checks
that it names exactly ``MODEL_REGISTRY``'s families)."""


def models_for(kind: str) -> tuple[str, ...]:
    """The model families that serve input kind ``kind``, in registry order.

    >>> models_for("image")
    ('conv2d_vae', 'conv2d_vae_stem')
    """
    return tuple(name for name, kinds in MODEL_KINDS.items() if kind in kinds)


TABULAR_MODELS: tuple[str, ...] = models_for("tabular")
"""Model families ``streamvae train`` fits to feature vectors (``model.name``)."""
KPI_MODELS: tuple[str, ...] = models_for("window")
"""Model families ``streamvae train-kpi`` fits to KPI windows (``--model``)."""
IMAGE_MODELS: tuple[str, ...] = models_for("image")
"""Model families ``streamvae train-images`` fits to images (``--model``)."""
