"""Runtime settings: YAML files, ``STREAMVAE_*`` environment variables and ``--set`` overrides.

Precedence, highest first: ``--set key=value`` > environment (``STREAMVAE_SECTION__KEY``) >
YAML file > built-in defaults. Settings are loaded once in the CLI and passed down.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from streamvae.errors import ConfigError, did_you_mean
from streamvae.thresholds import (
    DEFAULT_BANDS,
    Bootstrap,
    CalibrationSpec,
    check_bands,
    fpr_for_alert_budget,
)
from streamvae.types import IMAGE_MODELS, KPI_MODELS, TABULAR_MODELS, ScoreKind


def unknown_model_message(name: str, kind: str, allowed: tuple[str, ...]) -> str:
    """Why ``name`` is refused for ``kind`` data: a suggestion and the families that fit.

    >>> unknown_model_message("vea", "tabular", TABULAR_MODELS)
    "unknown model 'vea' (did you mean 'vae'?); tabular models: vae, sparse_vae, cvae, dcvae"
    >>> unknown_model_message("conv2d_vae", "tabular", TABULAR_MODELS).split(";")[0]
    "model 'conv2d_vae' is not for tabular data (train it with train-images)"
    """
    commands = {"train": TABULAR_MODELS, "train-kpi": KPI_MODELS, "train-images": IMAGE_MODELS}
    fits = [command for command, names in commands.items() if name in names]
    listing = f"{kind} models: {', '.join(allowed)}"
    if fits:
        return (
            f"model {name!r} is not for {kind} data (train it with {' or '.join(fits)}); " + listing
        )
    return f"unknown model {name!r}{did_you_mean(name, allowed)}; {listing}"


_SECTION = ConfigDict(frozen=True, extra="forbid")
ENV_PREFIX = "STREAMVAE_"
SettingsT = TypeVar("SettingsT", bound="BaseSettings")


class DataSettings(BaseModel):
    """Where the training data is and which columns to use."""

    model_config = _SECTION
    path: str | None = None
    builtin: str | None = Field(None, description="a data set shipped in the package, e.g. cardio")
    label_column: str = "label"
    feature_columns: tuple[str, ...] | None = None
    context_columns: tuple[str, ...] = Field(
        (), description="numeric context (condition of cvae/dcvae), e.g. hour of day"
    )
    categorical_columns: tuple[str, ...] = Field(
        (), description="categorical context (condition of cvae/dcvae), e.g. channel"
    )
    normal_only: bool = True
    calibration_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 0
    streaming: bool = Field(
        False,
        description="read data.path (Parquet) batch by batch: data larger than memory "
        "(a directory or glob of Parquet files always is)",
    )
    batch_rows: int = Field(65_536, ge=1, description="streaming: rows read at a time")


class ModelSettings(BaseModel):
    """Which registered model family and its hyper-parameters."""

    model_config = _SECTION
    name: str = Field("vae", description=", ".join(TABULAR_MODELS))
    latent_dim: int = Field(8, ge=1)
    hidden_dims: tuple[int, ...] = (64, 32)
    width: float = Field(1.0, gt=0.0, description="multiplies every hidden width")
    beta: float = Field(1.0, ge=0.0)
    activation: Literal["relu", "leaky_relu", "elu", "tanh", "gelu"] = "relu"
    learn_variance: bool = Field(True, description="train the decoder variance gamma")
    per_feature_variance: bool = Field(
        True, description="with learn_variance: one trained gamma per feature"
    )
    embedding_dim: int = Field(4, ge=1, description="cvae/dcvae: per categorical context field")
    score_kind: ScoreKind | Literal["auto"] = Field(
        "auto", description="auto: fused, or neg_elbo for the context-conditioned cvae/dcvae"
    )
    is_samples: int = Field(64, ge=1, le=10_000, description="K of the is_nll and bpd scores")
    neighbours: int = Field(1, ge=1, le=100, description="k of the neighbour / fused scores")
    neighbour_rows: int = Field(
        2048, ge=10, le=1_000_000, description="the most training rows the index keeps"
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="the family's own hyper-parameters (ModelSpec.params), e.g. init_log_gamma",
    )

    @field_validator("name")
    @classmethod
    def _tabular_family(cls, value: str) -> str:
        if value not in TABULAR_MODELS:
            raise ValueError(unknown_model_message(value, "tabular", TABULAR_MODELS))
        return value


class BetaScheduleSettings(BaseModel):
    """How beta moves during training (see ``streamvae.training.BetaSchedule``)."""

    model_config = _SECTION
    kind: Literal["constant", "linear", "cyclical"] = "constant"
    warmup_fraction: float = Field(0.25, gt=0.0, le=1.0, description="linear warm-up share")
    cycles: int = Field(4, ge=1, description="cyclical: number of cycles M")
    ratio: float = Field(0.5, gt=0.0, le=1.0, description="cyclical: rising share R of a cycle")


class OptimSettings(BaseModel):
    """Optimisation settings (see ``streamvae.training.TrainConfig``)."""

    model_config = _SECTION
    epochs: int | None = Field(
        None,
        ge=1,
        description="epoch limit; unset: 100, raised on small data to reach min_steps",
    )
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    patience: int = Field(10, ge=0)
    min_steps: int = Field(4000, ge=0, description="unset epochs: train at least these steps")
    patience_steps: int = Field(400, ge=0, description="raise patience to cover these steps")
    max_epochs: int = Field(2000, ge=1, description="the most epochs min_steps may reach")
    min_delta: float = Field(1e-4, ge=0.0)
    grad_clip: float = Field(10.0, ge=0.0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: Literal["auto", "off"] = "auto"
    beta_schedule: BetaScheduleSettings = BetaScheduleSettings()


class CalibrationSettings(BaseModel):
    """Threshold calibration on held-out normal scores.

    A target (``target_fpr``, or ``alerts_per_day`` at ``records_per_second``) takes
    precedence over ``percentile``.
    """

    model_config = _SECTION
    percentile: float = Field(99.0, gt=0.0, lt=100.0)
    target_fpr: float | None = Field(None, gt=0.0, lt=1.0)
    alerts_per_day: float | None = Field(None, gt=0.0)
    records_per_second: float | None = Field(None, gt=0.0, description="normal traffic rate")
    tail: bool = Field(False, description="fit a generalised Pareto tail (rates below 1/(n+1))")
    tail_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    bootstrap: int = Field(500, ge=0, description="bootstrap resamples for the intervals")
    interval_level: float = Field(0.9, gt=0.0, lt=1.0)
    segment_field: str | None = None
    min_segment_size: int = Field(200, ge=1)
    severity_bands: tuple[tuple[Literal["warning", "critical"], float], ...] = DEFAULT_BANDS  # type: ignore[assignment]

    @model_validator(mode="after")
    def _budget_needs_a_rate(self) -> CalibrationSettings:
        if self.alerts_per_day is not None and self.records_per_second is None:
            msg = "alerts_per_day needs records_per_second (the normal traffic rate)"
            raise ValueError(msg)
        check_bands(self.severity_bands)
        return self

    def spec(self) -> CalibrationSpec:
        """The core calibration spec these settings describe."""
        target = self.target_fpr
        if self.alerts_per_day is not None and self.records_per_second is not None:
            target = fpr_for_alert_budget(self.alerts_per_day, self.records_per_second)
        return CalibrationSpec(
            percentile=None if target is not None else self.percentile,
            target_fpr=target,
            tail=self.tail,
            tail_fraction=self.tail_fraction,
            bootstrap=Bootstrap(n_resamples=self.bootstrap, level=self.interval_level),
            segment_field=self.segment_field,
            min_segment_size=self.min_segment_size,
            severity_bands=self.severity_bands,
        )


class TrackingSettings(BaseModel):
    """MLflow tracking store and registry."""

    model_config = _SECTION
    tracking_uri: str | None = Field(
        None, description="default: MLFLOW_TRACKING_URI, else a SQLite file under work_dir"
    )
    work_dir: str = ".streamvae"
    experiment: str = "streamvae"
    registered_model: str | None = "streamvae-tabular"
    alias: str | None = None


class TrainSettings(BaseSettings):
    """Everything ``streamvae train`` needs."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", frozen=True, extra="forbid"
    )
    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    training: OptimSettings = OptimSettings()
    calibration: CalibrationSettings = CalibrationSettings()
    tracking: TrackingSettings = TrackingSettings()


class KafkaSettings(BaseModel):
    """Kafka connection, topics and consumer-group behaviour."""

    model_config = _SECTION
    bootstrap_servers: str = "127.0.0.1:9092"
    client: Literal["kafka-python", "confluent"] = Field(
        "kafka-python", description="confluent: librdkafka, faster; pip install 'streamvae[fast]'"
    )
    input_topic: str = "features"
    alert_topic: str = "alerts"
    dead_letter_topic: str = "dead-letters"
    score_topic: str | None = Field(None, description="optional: every score, not just alerts")
    state_topic: str | None = Field(
        None,
        description="KPI models: window state snapshots (default '<input_topic>-state'; "
        "create it with as many partitions as the input topic, cleanup.policy=compact)",
    )
    group_id: str = "streamvae"
    client_id: str = "streamvae"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    connect_timeout_ms: int = Field(
        5_000, ge=100, le=600_000, description="how long to try a broker that does not answer"
    )
    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    max_poll_records: int = Field(2_000, ge=1)
    fetch_max_wait_ms: int = Field(50, ge=0, description="broker-side wait for more data per fetch")
    fetch_max_bytes: int = Field(52_428_800, ge=1024)
    max_partition_fetch_bytes: int = Field(8_388_608, ge=1024)
    max_request_size: int = Field(8_388_608, ge=1024)
    linger_ms: int = Field(5, ge=0)
    batch_size: int = Field(
        1_048_576,
        ge=1024,
        description="producer batch bytes per partition (kafka-python's "
        "16 KiB default halves its send rate)",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = Field(
        None, description="prefer STREAMVAE_KAFKA__SASL_PASSWORD or sasl_password_file"
    )
    sasl_password_file: str | None = Field(
        None, description="read the SASL password from this file (a mounted secret)"
    )
    ssl_cafile: str | None = Field(None, description="CA bundle (PEM) that signed the brokers")
    ssl_certfile: str | None = Field(None, description="client certificate (PEM), mutual TLS")
    ssl_keyfile: str | None = Field(None, description="client private key (PEM), mutual TLS")
    ssl_password: SecretStr | None = Field(None, description="password of ssl_keyfile")
    ssl_check_hostname: bool = True
    delivery: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="exactly_once: outputs and input offsets in one Kafka transaction "
        "(Apache Kafka; consumers of the outputs read with isolation.level=read_committed)",
    )
    transactional_id: str | None = Field(
        None, description="exactly_once: the producer's transactional.id (default: per host)"
    )
    transaction_timeout_ms: int = Field(60_000, ge=1_000)
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "none",
        description="compression of the outputs (alerts, scores, dead letters, state); input "
        "in any codec is read whatever this says",
    )
    value_format: Literal["json", "avro"] = Field(
        "json",
        description="avro: Confluent-framed Avro (magic byte, schema id, body), schemas from "
        "schema_registry_url or avro_schema_dir",
    )
    schema_registry_url: str | None = Field(
        None, description="Confluent-compatible Schema Registry, e.g. http://registry:8081"
    )
    schema_registry_username: str | None = Field(None, description="basic auth (an API key)")
    schema_registry_password: SecretStr | None = Field(
        None, description="basic auth secret; prefer STREAMVAE_KAFKA__SCHEMA_REGISTRY_PASSWORD"
    )
    avro_schema_dir: str | None = Field(
        None, description="instead of a registry: a directory of <schema id>.avsc files"
    )
    schema_cache_size: int = Field(1_000, ge=1, description="Avro schemas kept in memory")
    check_topics: bool = Field(
        True,
        description="refuse to start when an output topic (alerts, dead letters, scores) is "
        "missing; turn off only where the broker creates topics on first write",
    )

    @model_validator(mode="after")
    def _delivery_is_supported(self) -> KafkaSettings:
        if self.delivery == "exactly_once" and self.client != "kafka-python":
            msg = "kafka.delivery=exactly_once is implemented for kafka.client=kafka-python"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _avro_has_schemas(self) -> KafkaSettings:
        sources = (self.schema_registry_url is not None) + (self.avro_schema_dir is not None)
        if self.value_format == "avro" and sources != 1:
            msg = "kafka.value_format=avro needs schema_registry_url or avro_schema_dir (one)"
            raise ValueError(msg)
        url = self.schema_registry_url
        if url is not None and not url.startswith(("http://", "https://")):
            msg = f"schema_registry_url must be an http(s) URL, got {url!r}"
            raise ValueError(msg)
        return self

    def isolation_level(self) -> str:
        """``read_committed`` under exactly-once (never read aborted inputs or state)."""
        return "read_committed" if self.delivery == "exactly_once" else "read_uncommitted"

    def resolved_transactional_id(self) -> str:
        """The transactional.id: the setting, else one per group and host."""
        return self.transactional_id or f"streamvae-{self.group_id}-{socket.gethostname()}"

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and (self.sasl_mechanism is None or not self.sasl_username):
            msg = (
                f"security_protocol {self.security_protocol} needs sasl_mechanism and sasl_username"
            )
            raise ValueError(msg)
        if sasl and self.sasl_password is None and self.sasl_password_file is None:
            msg = "SASL needs sasl_password (environment) or sasl_password_file"
            raise ValueError(msg)
        if self.sasl_password is not None and self.sasl_password_file is not None:
            msg = "set sasl_password or sasl_password_file, not both"
            raise ValueError(msg)
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "sasl_password_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                msg = f"{name} {path!r} is not a readable file"
                raise ValueError(msg)
        return self

    def sasl_secret(self) -> str | None:
        """The SASL password, from the setting or read from ``sasl_password_file``."""
        if self.sasl_password is not None:
            return self.sasl_password.get_secret_value()
        if self.sasl_password_file is not None:
            return Path(self.sasl_password_file).read_text(encoding="utf-8").rstrip("\r\n")
        return None


class ServeSettings(BaseSettings):
    """Everything ``streamvae serve`` needs."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", frozen=True, extra="forbid"
    )
    model_uri: str = "models:/streamvae-tabular@champion"
    kafka: KafkaSettings = KafkaSettings()
    tracking: TrackingSettings = TrackingSettings()
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9108, ge=0, le=65535)
    poll_timeout_ms: int = Field(200, ge=1)
    target_batch_records: int = Field(
        5_000, ge=1, description="records per scoring batch when messages carry arrays"
    )
    commit_interval_s: float = Field(
        1.0, ge=0.0, description="flush + commit period; 0 = after every batch"
    )
    max_message_bytes: int = Field(1_048_576, ge=64)
    max_records_per_message: int = Field(10_000, ge=1)
    top_features: int = Field(3, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    strict_versions: bool = False
    model_poll_interval_s: float = Field(
        30.0, ge=0.0, description="follow the model alias: registry poll period (0: off)"
    )
    shadow_model_uri: str | None = Field(
        None, description="also score with this model (e.g. the @challenger alias), no alerts"
    )
    alert_cooldown_s: float = Field(
        0.0, ge=0.0, description="at most one alert per key (KPI: series) per this event time"
    )
    alert_confirm_m: int = Field(
        1, ge=1, le=64, description="alert when m of a key's last n scores are flagged"
    )
    alert_confirm_n: int = Field(1, ge=1, le=64, description="the n of m-of-n confirmation")
    image_maps: Literal["off", "rec_error", "elbo_grad", "rec_grad", "kl_grad", "combi"] = Field(
        "rec_error", description="image models: the map explaining alerts (gradients: slower)"
    )
    image_map_dir: str | None = Field(
        None, description="image models: save each alert's full map (.npy) here"
    )
    image_map_max_files: int = Field(
        10_000, ge=1, description="image models: map files kept in image_map_dir (oldest removed)"
    )
    header_fields: dict[str, str] = Field(
        default_factory=dict,
        description="message header -> record field it fills when the record lacks it, e.g. "
        "{tenant: segment} for per-tenant thresholds or {account: key} for the alert key",
    )
    on_processing_error: Literal["dead_letter", "fail"] = Field(
        "dead_letter",
        description="a message whose handling raises: dead-letter it (reason processing_error) "
        "and go on, or stop without committing (fail)",
    )
    max_consecutive_failures: int = Field(
        100, ge=1, description="messages failing in a row before the service stops (broken model)"
    )
    max_output_bytes: int = Field(
        1_000_000,
        ge=1024,
        description="largest output record (value + key + headers); keep under the broker's "
        "message.max.bytes: larger ones are truncated (dead letters) or dead-lettered",
    )
    stall_timeout_s: float = Field(
        120.0, gt=0.0, description="/healthz fails when the loop has not polled for this long"
    )
    drift_window: int = Field(5_000, ge=1, description="live scores compared with calibration")
    drift_min_count: int = Field(200, ge=1, description="scores before drift gauges are set")
    kpi_max_series: int = Field(
        100_000, ge=1, description="KPI models: live series cap (least recently updated evicted)"
    )
    kpi_series_ttl_s: float = Field(
        86_400.0, gt=0.0, description="KPI models: drop a series' window after this silence"
    )

    @field_validator("header_fields")
    @classmethod
    def _header_fields_are_plain(cls, value: dict[str, str]) -> dict[str, str]:
        for header, field_name in value.items():
            if field_name in ("features", "context") or not header or not field_name:
                msg = f"header_fields {header!r}: {field_name!r} cannot be filled from a header"
                raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _outputs_fit_requests(self) -> ServeSettings:
        if self.max_output_bytes > self.kafka.max_request_size:
            msg = (
                f"max_output_bytes ({self.max_output_bytes}) must not exceed "
                f"kafka.max_request_size ({self.kafka.max_request_size})"
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _confirmation_fits(self) -> ServeSettings:
        if self.alert_confirm_m > self.alert_confirm_n:
            m, n = self.alert_confirm_m, self.alert_confirm_n
            msg = f"alert_confirm_m ({m}) must not exceed alert_confirm_n ({n})"
            raise ValueError(msg)
        return self

    @field_validator("model_uri")
    @classmethod
    def _uri_not_empty(cls, value: str) -> str:
        if not value.strip():
            msg = "model_uri must not be empty"
            raise ValueError(msg)
        return value


def check_model_uri(uri: str) -> None:
    """Reject obviously malformed model URIs early, with the bad value (no MLflow needed).

    Raises:
        ConfigError: empty or malformed URI, or a bundle directory that does not exist.
    """
    if uri.startswith("models:/"):
        rest = uri.removeprefix("models:/")
        if not rest or ("@" not in rest and "/" not in rest):
            msg = f"bad model URI {uri!r}: use models:/NAME@ALIAS or models:/NAME/VERSION"
            raise ConfigError(msg)
    elif uri.startswith("runs:/"):
        if not uri.removeprefix("runs:/").strip("/"):
            msg = f"bad model URI {uri!r}: use runs:/RUN_ID"
            raise ConfigError(msg)
    elif not Path(uri).exists():
        msg = f"model {uri!r} is neither models:/..., runs:/... nor an existing bundle directory"
        raise ConfigError(msg)


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ``["training.epochs=50", "model.hidden_dims=[32,16]"]`` into a nested dict.

    Values are parsed as YAML scalars or flow collections.

    Raises:
        ConfigError: a pair without ``=`` or with an empty key.
    """
    nested: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip() or any(not part for part in key.split(".")):
            msg = f"bad --set {pair!r}: expected key.path=value"
            raise ConfigError(msg)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                msg = f"bad --set {pair!r}: {part!r} is set both as a value and a section"
                raise ConfigError(msg)
        node[leaf] = value
    return nested


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping.

    Raises:
        ConfigError: missing file, invalid YAML, or not a mapping.
    """
    file = Path(path)
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        msg = f"config file {str(file)!r} does not exist"
        raise ConfigError(msg) from None
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_message(file, exc)) from exc
    if not isinstance(values, dict):
        msg = f"config file {str(file)!r} must hold a mapping at the top level"
        raise ConfigError(msg)
    return values


def yaml_error_message(file: Path, exc: yaml.YAMLError) -> str:
    """One line: the file, the 1-based line and column of the problem, and what it is."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"config file {str(file)!r} is not valid YAML{where}: {problem}"


SECRET_WORDS = ("password", "secret", "token", "credential")


def _section_fields(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """The setting names of the section of ``model`` at ``loc`` (empty when not a section)."""
    for part in loc:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def first_error(
    exc: ValidationError,
    model: type[BaseModel] | None = None,
    options: Mapping[str, str] | None = None,
) -> str:
    """One line naming the first invalid setting and its value (never a secret's value).

    Args:
        exc: the validation error.
        model: the settings class validated; unknown keys then get a "did you mean".
        options: setting path -> the CLI option that set it (``{"target_fpr": "--fpr"}``),
            so the message names what the user typed.
    """
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    where = ".".join(loc) or "(root)"
    if err["type"] == "extra_forbidden":
        known = _section_fields(model, loc[:-1]) if model is not None else []
        hint = did_you_mean(loc[-1], known) if loc else ""
        listing = f"; known: {', '.join(known)}" if known and not hint else ""
        return f"unknown setting {where}{hint}{listing}"
    value = err.get("input")
    secret = any(word in where.lower() for word in SECRET_WORDS)
    message = str(err["msg"]).removeprefix("Value error, ")
    if secret or isinstance(value, SecretStr):
        shown = " (value hidden)"
    elif isinstance(value, dict) or repr(value) in message:
        shown = ""
    else:
        shown = f" (got {value!r:.60})"
    option = (options or {}).get(where)
    label = option if option else f"setting {where}"
    return f"invalid {label}: {message}{shown}"


def load_settings(
    cls: type[SettingsT],
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    extra: dict[str, Any] | None = None,
    options: Mapping[str, str] | None = None,
) -> SettingsT:
    """Load settings of type ``cls`` from defaults, YAML, environment and overrides.

    Args:
        cls: ``TrainSettings`` or ``ServeSettings``.
        config_file: optional YAML file.
        overrides: ``key.path=value`` pairs (``--set``).
        extra: values set by dedicated CLI options (same precedence as ``--set``).
        options: setting path -> the option that sets it; an error names the option when
            ``extra`` holds that path (the user typed it), the setting otherwise.

    Raises:
        ConfigError: one line naming the first bad value.
    """
    file_values = read_yaml(config_file) if config_file else {}
    env_values = EnvSettingsSource(cls, env_prefix=ENV_PREFIX, env_nested_delimiter="__")()
    merged = _deep_merge(_deep_merge(file_values, env_values), parse_overrides(overrides))
    merged = _deep_merge(merged, extra or {})
    try:
        return cls(**merged)
    except ValidationError as exc:
        given = {path: flag for path, flag in (options or {}).items() if _has_path(extra, path)}
        raise ConfigError(first_error(exc, cls, given)) from exc


def _has_path(values: Mapping[str, Any] | None, path: str) -> bool:
    """Whether the nested mapping ``values`` holds the dotted ``path``."""
    node: Any = values or {}
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
