"""Feature-vector messages into rows: a fast path for clean messages, the exact path for the rest.

The service spends most of its time here, once per record, so the common case (a valid
message) goes through one tight path that only checks; anything it does not accept as it is
(bad JSON, a schema mismatch, a wrong type, a batch with one bad element) is read again by
the exact path, which explains the failure and dead-letters just the bad part. A message
yields the same rows and dead letters whichever path reads it; the property tests check it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from streamvae.data.schema import NUMBER_TYPES, ContextSchema, FeatureSchema
from streamvae.errors import PayloadDecodeError
from streamvae.service.outcome import (
    MAX_TS_MS,
    BatchOutcome,
    check_ts,
    decode_records,
    record_bytes,
    record_ts,
)
from streamvae.types import InboundMessage


@dataclass(slots=True)
class FeatureRows:
    """The valid records of one poll, row-aligned."""

    dim: int  # features per row
    # each row's features in schema order as packed float64: joined, they are the matrix
    # (twice as fast as building it from lists of Python floats)
    packed: list[bytes] = field(default_factory=list)
    contexts: list[list[float]] = field(default_factory=list)  # conditional models only
    records: list[dict[str, Any]] = field(default_factory=list)
    sources: list[tuple[InboundMessage, int]] = field(default_factory=list)  # message, element
    ts: list[int] = field(default_factory=list)  # event time (see ``record_ts``)

    def __len__(self) -> int:
        return len(self.packed)

    def features(self) -> npt.NDArray[np.float64]:
        """The ``(rows, dim)`` feature matrix."""
        flat = np.frombuffer(b"".join(self.packed), np.float64, count=len(self.packed) * self.dim)
        return flat.reshape(len(self.packed), self.dim)

    def truncate(self, n: int) -> None:
        """Drop every row from ``n`` on."""
        del self.packed[n:], self.contexts[n:], self.records[n:], self.sources[n:], self.ts[n:]


class _IrregularError(Exception):
    """A message the fast path leaves to the exact path."""


def _features_of(record: object) -> object:
    if not isinstance(record, dict) or "features" not in record:
        detail = "each record must be an object with a 'features' field"
        raise PayloadDecodeError(reason="invalid_record", detail=detail)
    return record["features"]


class FeatureReader:
    """Reads polled messages into :class:`FeatureRows`, dead-lettering what is invalid."""

    def __init__(
        self,
        schema: FeatureSchema,
        context: ContextSchema | None,
        *,
        max_bytes: int,
        max_records: int,
        dead_letter_topic: str,
    ) -> None:
        self.schema, self.context = schema, context
        self.max_bytes, self.max_records = max_bytes, max_records
        self.dead_letter_topic = dead_letter_topic
        self._names, self._name_set, self._dim = schema.names, schema.name_set, schema.dim
        self._row = struct.Struct(f"={schema.dim}d")

    def read(self, messages: list[InboundMessage], outcome: BatchOutcome) -> FeatureRows:  # noqa: C901
        """The valid records of ``messages``; every other record is dead-lettered in ``outcome``.

        Counts every record in ``outcome.records_consumed``. One flat loop with its lookups
        hoisted and no call per record: it runs for every record the service consumes. Any
        doubt raises ``_IrregularError``, and ``read_exact`` reads that message again.
        """
        rows = FeatureRows(self._dim)
        packed_, contexts_, records_, sources_, ts_ = (
            rows.packed, rows.contexts, rows.records, rows.sources, rows.ts
        )  # fmt: skip
        names, name_set, dim, context = self._names, self._name_set, self._dim, self.context
        in_order = names
        max_bytes, max_records, loads = self.max_bytes, self.max_records, orjson.loads
        pack = self._row.pack
        clean = 0
        for message in messages:
            start = len(packed_)
            try:
                value = message.value
                if not value or len(value) > max_bytes:
                    raise _IrregularError
                payload = loads(value)
                if type(payload) is dict:
                    batch: list[Any] | tuple[dict[str, Any]] = (payload,)
                elif type(payload) is list and 0 < len(payload) <= max_records:
                    batch = payload
                else:
                    raise _IrregularError
                index = 0
                for record in batch:
                    if type(record) is not dict:
                        raise _IrregularError
                    features = record.get("features")
                    if type(features) is list and len(features) == dim:
                        values = features
                    elif type(features) is not dict:
                        raise _IrregularError
                    elif (keys := tuple(features)) == in_order:  # schema order, as usual
                        values = list(features.values())
                        # orjson reuses its key strings: compared with the last match's, they
                        # are equal by identity (twice as fast as by content)
                        in_order = keys
                    elif features.keys() == name_set:
                        values = list(map(features.__getitem__, names))
                    else:
                        raise _IrregularError
                    if not NUMBER_TYPES.issuperset(map(type, values)):
                        raise _IrregularError
                    ts = record.get("ts")
                    if ts is None:
                        ts = message.timestamp_ms or 0
                    elif type(ts) is not int or not 0 <= ts <= MAX_TS_MS:
                        raise _IrregularError
                    if context is not None:  # raises PayloadDecodeError: read_exact explains
                        contexts_.append(context.vector(record.get("context")))
                    packed_.append(pack(*values))
                    records_.append(record)
                    sources_.append((message, index))
                    ts_.append(ts)
                    index += 1
                clean += index
            except (_IrregularError, orjson.JSONDecodeError, PayloadDecodeError):
                rows.truncate(start)
                self.read_exact(message, rows, outcome)
        outcome.records_consumed += clean
        return rows

    def read_exact(self, message: InboundMessage, rows: FeatureRows, outcome: BatchOutcome) -> None:
        """Reads one message record by record, dead-lettering each invalid part with a reason."""
        try:
            records = decode_records(
                message, max_bytes=self.max_bytes, max_records=self.max_records
            )
        except PayloadDecodeError as exc:
            outcome.reject(self.dead_letter_topic, message, exc)
            return
        outcome.records_consumed += len(records)
        for index, record in enumerate(records):
            try:
                values = self.schema.vector(_features_of(record))
                check_ts(record.get("ts"))
                context = (
                    None if self.context is None else self.context.vector(record.get("context"))
                )
            except PayloadDecodeError as exc:
                value = record_bytes(message, record)
                outcome.dead_letter(self.dead_letter_topic, message, index, value, exc)
                continue
            if context is not None:
                rows.contexts.append(context)
            rows.packed.append(self._row.pack(*values))
            rows.records.append(record)
            rows.sources.append((message, index))
            rows.ts.append(record_ts(record, message))
