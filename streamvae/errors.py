"""The exception hierarchy: every error a user can cause is a ``StreamVAEError``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class StreamVAEError(Exception):
    """Root of every error streamvae raises on purpose (bad input, config, data)."""


class ConfigError(StreamVAEError):
    """A configuration value or CLI argument is invalid."""


class DataError(StreamVAEError):
    """A data file cannot be read or does not hold what is expected."""


class SchemaMismatchError(DataError):
    """Records do not match the model's feature schema (missing, extra or mistyped)."""


class ModelLoadError(StreamVAEError):
    """A model bundle or registry entry cannot be found or loaded."""


class VersionMismatchError(ModelLoadError):
    """A bundle saved by another streamvae/torch/python version, refused under strict_versions."""


class NotCalibratedError(StreamVAEError):
    """A model has no threshold, so it cannot decide what is anomalous."""


class BrokerError(StreamVAEError):
    """The Kafka broker cannot be reached, started or used."""


class DependencyError(StreamVAEError):
    """A service the pipeline needs (a schema registry) cannot be reached or refuses access.

    Not the input's fault: the service stops without committing and retries on restart,
    rather than dead-lettering good records during an outage.
    """


class ProcessingHaltedError(StreamVAEError):
    """So many messages in a row failed in processing that the service, not the input, is broken.

    The service stops without committing, so nothing is skipped (see ``ServiceRunner``).
    """


class PayloadDecodeError(StreamVAEError):
    """One consumed record cannot be decoded or validated; it goes to the dead-letter topic.

    Attributes:
        reason: short, low-cardinality reason code (``invalid_json``, ``schema_mismatch``, ...).
        detail: human-readable detail naming the bad value.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``, or an empty string.

    >>> did_you_mean("betta", ["beta", "latent_dim"]), did_you_mean("zzz", ["beta"])
    (" (did you mean 'beta'?)", '')
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
