"""Avro in the Confluent wire format: schemas by id (Schema Registry or local files), decoding.

A Confluent-framed Avro message is one magic byte ``0``, the writer schema's id (4 bytes, big
endian) and the Avro binary body. Schemas come from a Schema Registry (``GET
/schemas/ids/{id}``, the registry's documented REST API, optional HTTP basic auth) or from a
directory of ``{id}.avsc`` files; either way they are parsed once and kept in a bounded cache.

Bad messages raise ``PayloadDecodeError`` (dead-lettered): ``invalid_avro`` (not the wire
format, or a body the schema cannot read) and ``schema_mismatch`` (an id the registry does not
know). A registry that cannot be reached raises ``DependencyError``: the service stops without
committing and retries on restart, rather than dead-lettering good records during an outage.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import fastavro

from streamvae.errors import ConfigError, DependencyError, PayloadDecodeError

logger = logging.getLogger(__name__)

MAGIC = 0
HEADER_BYTES = 5
REGISTRY_ACCEPT = "application/vnd.schemaregistry.v1+json"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
UNKNOWN_ID_TTL_S = 60.0  # an id the registry did not know is asked for again after this


class SchemaSource(Protocol):
    """Parsed Avro writer schemas by id."""

    def schema(self, schema_id: int) -> Any:
        """The parsed schema.

        Raises:
            PayloadDecodeError: ``schema_mismatch``, the id is unknown.
            DependencyError: the source cannot be reached.
        """
        ...


def _unknown(schema_id: int, where: str) -> PayloadDecodeError:
    return PayloadDecodeError(
        reason="schema_mismatch", detail=f"unknown Avro schema id {schema_id} ({where})"
    )


def parse_schema(text: str, where: str) -> Any:
    """A schema's JSON text, parsed for fastavro.

    Raises:
        ValueError: not JSON or not a valid Avro schema.
    """
    try:
        return fastavro.parse_schema(json.loads(text))
    except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
        msg = f"invalid Avro schema {where}: {exc}"
        raise ValueError(msg) from exc


class LocalSchemas:
    """Schemas from ``{id}.avsc`` files in a directory, read at start.

    Raises:
        ConfigError: the directory is missing, a file name is not an id, or a schema invalid.
    """

    def __init__(self, directory: str | Path) -> None:
        root = Path(directory)
        if not root.is_dir():
            msg = f"kafka.avro_schema_dir {str(root)!r} is not a directory"
            raise ConfigError(msg)
        self._schemas: dict[int, Any] = {}
        for path in sorted(root.glob("*.avsc")):
            if not path.stem.isdigit():
                msg = f"Avro schema file {path.name!r} must be named <schema id>.avsc"
                raise ConfigError(msg)
            try:
                self._schemas[int(path.stem)] = parse_schema(path.read_text("utf-8"), path.name)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        logger.info("Avro schemas loaded from %s ids=%s", root, sorted(self._schemas))

    def schema(self, schema_id: int) -> Any:
        """The schema of ``{schema_id}.avsc``."""
        found = self._schemas.get(schema_id)
        if found is None:
            raise _unknown(schema_id, "no such .avsc file")
        return found


Fetch = Callable[[urllib.request.Request, float], bytes]


def _urlopen(request: urllib.request.Request, timeout_s: float) -> bytes:
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body: bytes = response.read()
    return body


class RegistryClient:
    """Schemas by id from a Confluent-compatible Schema Registry, cached (LRU, ``cache_size``).

    Args:
        url: the registry's base URL (``http://registry:8081``).
        username, password: HTTP basic auth (Confluent Cloud: API key and secret).
        timeout_s: per request.
        retries: attempts after the first, with a doubling pause, before ``DependencyError``.
        cache_size: schemas kept; ids seen again are never fetched again.
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 5.0,
        retries: int = 2,
        cache_size: int = 1_000,
        fetch: Fetch = _urlopen,
    ) -> None:
        self.url = url.rstrip("/")
        self._auth = None
        if username is not None:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._auth = f"Basic {token}"
        self.timeout_s, self.retries, self.cache_size = timeout_s, retries, cache_size
        self._fetch = fetch
        self._cache: OrderedDict[int, Any] = OrderedDict()
        self._unknown: OrderedDict[int, float] = OrderedDict()  # id -> when it was refused
        self.requests = 0

    def schema(self, schema_id: int) -> Any:
        """The parsed schema with id ``schema_id`` (fetched once, then cached)."""
        cached = self._cache.get(schema_id)
        if cached is not None:
            self._cache.move_to_end(schema_id)
            return cached
        refused = self._unknown.get(schema_id)
        if refused is not None and time.monotonic() - refused < UNKNOWN_ID_TTL_S:
            raise _unknown(schema_id, "not in the registry")
        parsed = self._download(schema_id)
        self._cache[schema_id] = parsed
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return parsed

    def _download(self, schema_id: int) -> Any:
        body = self._get(schema_id)
        try:
            answer = json.loads(body)
            kind = answer.get("schemaType", "AVRO")
            if kind != "AVRO":
                raise _unknown(schema_id, f"a {kind} schema, not Avro")
            return parse_schema(answer["schema"], f"id {schema_id}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PayloadDecodeError(
                reason="schema_mismatch", detail=f"unusable Avro schema id {schema_id}: {exc}"
            ) from exc

    def _get(self, schema_id: int) -> bytes:
        """The registry's answer for ``schema_id``, retried with a doubling pause.

        Raises:
            PayloadDecodeError: 404, the id is unknown (remembered for ``UNKNOWN_ID_TTL_S``).
            DependencyError: refused credentials, or no answer after the retries.
        """
        request = urllib.request.Request(f"{self.url}/schemas/ids/{schema_id}")
        request.add_header("Accept", REGISTRY_ACCEPT)
        if self._auth is not None:
            request.add_header("Authorization", self._auth)
        pause = 0.2
        for attempt in range(self.retries + 1):
            self.requests += 1
            try:
                return self._fetch(request, self.timeout_s)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    self._remember_unknown(schema_id)
                    raise _unknown(schema_id, "not in the registry") from exc
                if exc.code in (401, 403):
                    msg = f"schema registry {self.url} refused the credentials (HTTP {exc.code})"
                    raise DependencyError(msg) from exc
                error: Exception = exc
            except (urllib.error.URLError, OSError) as exc:
                error = exc
            if attempt < self.retries:
                time.sleep(pause)
                pause *= 2
        msg = f"schema registry {self.url} unavailable for schema id {schema_id}: {error}"
        raise DependencyError(msg) from error

    def _remember_unknown(self, schema_id: int) -> None:
        self._unknown[schema_id] = time.monotonic()
        if len(self._unknown) > self.cache_size:
            self._unknown.popitem(last=False)


def schema_id_of(value: bytes | None) -> int:
    """The schema id of a Confluent-framed message.

    Raises:
        PayloadDecodeError: ``invalid_avro``, not the wire format.
    """
    if not value or len(value) < HEADER_BYTES or value[0] != MAGIC:
        detail = "not Confluent-framed Avro (magic byte 0, 4-byte schema id, body)"
        raise PayloadDecodeError(reason="invalid_avro", detail=detail)
    return int.from_bytes(value[1:HEADER_BYTES], "big")


def decode_avro(value: bytes | None, schemas: SchemaSource) -> Any:
    """The datum of a Confluent-framed Avro message, with plain JSON-ready values.

    Raises:
        PayloadDecodeError: ``invalid_avro`` or ``schema_mismatch``.
        DependencyError: the schema registry cannot be reached.
    """
    schema_id = schema_id_of(value)
    schema = schemas.schema(schema_id)
    assert value is not None
    body = io.BytesIO(value)
    body.seek(HEADER_BYTES)
    try:
        datum = fastavro.schemaless_reader(body, schema)
    except Exception as exc:  # fastavro raises many types on a truncated or foreign body
        detail = f"Avro body unreadable with schema id {schema_id}: {type(exc).__name__}: {exc}"
        raise PayloadDecodeError(reason="invalid_avro", detail=detail[:300]) from exc
    if body.tell() != len(value):
        detail = f"{len(value) - body.tell()} bytes left after the Avro datum"
        raise PayloadDecodeError(reason="invalid_avro", detail=detail)
    return plain(datum)


_SIMPLE = frozenset({str, int, float, bool, type(None)})


def plain(value: Any) -> Any:
    """Avro logical types as JSON values: timestamps as epoch ms, decimals as floats.

    A record of plain values (the usual case) is returned as it is, without a copy.
    """
    if isinstance(value, dict):
        if all(type(v) in _SIMPLE for v in value.values()):
            return value
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return (aware - EPOCH) // dt.timedelta(milliseconds=1)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.date | dt.time | uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value
