"""Bytes <-> messages: JSON feature-vector records in, JSON alerts and scores out."""

from __future__ import annotations

import json
from typing import Any

import orjson

from streamvae.errors import PayloadDecodeError


def _non_finite_tokens(value: bytes) -> bool:
    """True when ``value`` is JSON only because of NaN/Infinity tokens (json.dumps emits them)."""
    seen = False

    def constant(_token: str) -> float:
        nonlocal seen
        seen = True
        return 0.0

    try:
        json.loads(value, parse_constant=constant)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: not NaN's fault
        return False
    return seen


def decode_json(value: bytes | None, *, max_bytes: int) -> Any:
    """Parse one message value as JSON, with the failure mapped to a dead-letter reason.

    Raises:
        PayloadDecodeError: ``too_large``, ``invalid_encoding``, ``non_finite`` (NaN or
            Infinity tokens) or ``invalid_json``.
    """
    if not value:  # whitespace-only values fail in the parser below, without a copy here
        raise PayloadDecodeError(reason="invalid_json", detail="empty message value")
    if len(value) > max_bytes:
        detail = f"message of {len(value)} bytes exceeds max_message_bytes={max_bytes}"
        raise PayloadDecodeError(reason="too_large", detail=detail)
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in str(exc):
            raise PayloadDecodeError(reason="invalid_encoding", detail=str(exc)) from exc
        if _non_finite_tokens(value):
            detail = "NaN or Infinity is not a valid feature value"
            raise PayloadDecodeError(reason="non_finite", detail=detail) from exc
        raise PayloadDecodeError(reason="invalid_json", detail=str(exc)) from exc


def split_records(payload: Any, *, max_records: int) -> list[Any]:
    """One JSON object, or an array of them (a batch), as a list of records.

    Elements are returned as they are; the caller validates each one, so one bad element
    does not sink its neighbours.

    Raises:
        PayloadDecodeError: ``invalid_record`` (not an object or array, empty array) or
            ``too_large`` (more than ``max_records`` elements).
    """
    if isinstance(payload, dict):
        return [payload]
    if not isinstance(payload, list):
        detail = f"expected a JSON object or array, got {type(payload).__name__}"
        raise PayloadDecodeError(reason="invalid_record", detail=detail)
    if not payload:
        raise PayloadDecodeError(reason="invalid_record", detail="empty JSON array")
    if len(payload) > max_records:
        detail = f"batch of {len(payload)} records exceeds max_records_per_message={max_records}"
        raise PayloadDecodeError(reason="too_large", detail=detail)
    return payload


def encode_json(record: Any) -> bytes:
    """Serialise an alert, score or re-serialised record (numpy scalars allowed)."""
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)
