"""The composition root of the online path: model + Kafka + metrics wired into a runner."""

from __future__ import annotations

import gc
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

from streamvae.bundle import ModelBundle, TabularDetector, input_kind
from streamvae.config import ServeSettings
from streamvae.errors import BrokerError, ConfigError
from streamvae.metrics import MetricsServer, Registry, ServiceMetrics
from streamvae.service.features import FeatureInput
from streamvae.service.input_format import InputAdapter
from streamvae.service.kinds import SERVICE_INPUTS
from streamvae.service.model_watch import Candidate, ModelWatcher, Role
from streamvae.service.runner import BatchHandler, RunnerConfig, ServiceRunner, liveness
from streamvae.service.scoring import PipelineConfig, ScoringPipeline, StatefulInput
from streamvae.stream.admin import check_reachable, ensure_state_topic, missing_topics
from streamvae.stream.avro import LocalSchemas, RegistryClient, SchemaSource
from streamvae.stream.confluent import ConfluentMessageSink, ConfluentMessageSource
from streamvae.stream.consumer import KafkaMessageSource, missing_codecs
from streamvae.stream.producer import KafkaMessageSink
from streamvae.stream.state import read_state
from streamvae.stream.transactional import TransactionalKafkaSink
from streamvae.thresholds import HygienePolicy
from streamvae.tracking import configure, load_resolved, resolve
from streamvae.training import resolve_device
from streamvae.types import ModelRef, RunStats

logger = logging.getLogger(__name__)


class ScoringService:
    """Loads the model, connects to Kafka, serves metrics; ``run`` scores until stopped.

    Use as a context manager: entering loads and connects (raising a ``StreamVAEError`` on
    a bad model URI, a missing threshold or an unreachable broker), leaving closes the
    consumer (leaving the group), the producer and the metrics endpoint.
    """

    def __init__(self, settings: ServeSettings, *, registry: Registry | None = None) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics(registry, topic=settings.kafka.input_topic)
        self.model: ModelRef | None = None
        self.runner: ServiceRunner | None = None
        self.metrics_server: MetricsServer | None = None
        self.assigned = threading.Event()  # set once the consumer owns partitions
        self._watchers: list[ModelWatcher] = []
        self._pipeline: ScoringPipeline | None = None
        self._stack = ExitStack()

    def __enter__(self) -> ScoringService:
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        # The hot path allocates a dict per record. Left automatic, the cyclic collector
        # runs inside batches and promotes every live record to older generations, whose
        # collections then cost in proportion to the batch (3x slower on 100-record
        # messages). Records hold no cycles: freeze what is loaded, switch the automatic
        # collector off, and let the runner collect between batches (gc_interval_s).
        gc.freeze()
        was_enabled = gc.isenabled()
        gc.disable()
        self._stack.callback(lambda: gc.enable() if was_enabled else None)
        self._stack.callback(gc.unfreeze)
        return self

    def _open(self) -> None:
        s = self.settings
        self._check_broker()  # seconds, not the minute loading a model can take
        configure(s.tracking)
        workdir = Path(
            self._stack.enter_context(tempfile.TemporaryDirectory(prefix="streamvae-model-"))
        )
        resolved = resolve(s.model_uri, workdir / "initial")
        bundle = load_resolved(resolved, strict=s.strict_versions)
        device = str(resolve_device(s.device))
        self.model = resolved.ref
        pipeline, on_assignment = self._pipeline_for(bundle, resolved.ref, device)
        threshold = pipeline.threshold.default
        self.metrics.set_model(
            resolved.ref, bundle.score_kind, threshold.value, threshold.expected_alert_rate
        )
        ref = resolved.ref
        logger.info(
            "model loaded uri=%s name=%s version=%s score_kind=%s threshold=%.6g",
            s.model_uri, ref.name, ref.version, bundle.score_kind, threshold.value,
        )  # fmt: skip
        self._watch(pipeline, bundle, resolved.ref, workdir, device)
        handler = self._input_for(pipeline)
        source: KafkaMessageSource | ConfluentMessageSource
        sink: KafkaMessageSink | ConfluentMessageSink | TransactionalKafkaSink
        if s.kafka.client == "confluent":
            sink = ConfluentMessageSink(s.kafka)
            self._stack.callback(sink.close)
            source = ConfluentMessageSource(
                s.kafka, (s.kafka.input_topic,), on_assignment=on_assignment,
                before_revoke=self._checkpoint_before_revoke,
            )  # fmt: skip
        else:
            exactly_once = s.kafka.delivery == "exactly_once"
            sink = TransactionalKafkaSink(s.kafka) if exactly_once else KafkaMessageSink(s.kafka)
            self._stack.callback(sink.close)
            source = KafkaMessageSource(
                s.kafka, (s.kafka.input_topic,), on_assignment=on_assignment,
                before_revoke=self._checkpoint_before_revoke,
                committer=sink.commit_offsets if isinstance(sink, TransactionalKafkaSink) else None,
            )  # fmt: skip
        self._stack.callback(source.close)
        self.runner = ServiceRunner(
            source,
            sink,
            handler,
            self.metrics,
            RunnerConfig(
                poll_timeout_ms=s.poll_timeout_ms,
                max_poll_records=s.kafka.max_poll_records,
                commit_interval_s=s.commit_interval_s,
                gc_interval_s=1.0,
                target_batch_records=s.target_batch_records,
                dead_letter_topic=s.kafka.dead_letter_topic,
                on_processing_error=s.on_processing_error,
                max_consecutive_failures=s.max_consecutive_failures,
                max_output_bytes=s.max_output_bytes,
            ),
        )
        self.runner.between_batches.append(self._install_candidates)
        server = MetricsServer(
            self.metrics.registry, self.alive, s.metrics_host, s.metrics_port, ready=self.health
        )
        self.metrics_server = server.start()
        self._stack.callback(server.stop)

    def _input_for(self, pipeline: ScoringPipeline) -> BatchHandler:
        """The pipeline, behind an ``InputAdapter`` when the input is Avro or headers fill fields.

        Raises:
            ConfigError: Avro input for an image model; a bad local schema directory.
        """
        s, k = self.settings, self.settings.kafka
        schemas: SchemaSource | None = None
        if k.value_format == "avro":
            if pipeline.input.payload != "records":
                kind = input_kind(pipeline.detector.bundle.preprocess).label
                msg = f"kafka.value_format=avro: models of {kind} read .npy batches, not Avro"
                raise ConfigError(msg)
            if k.avro_schema_dir is not None:
                schemas = LocalSchemas(k.avro_schema_dir)
            else:
                assert k.schema_registry_url is not None  # checked by KafkaSettings
                password = k.schema_registry_password
                schemas = RegistryClient(
                    k.schema_registry_url, username=k.schema_registry_username,
                    password=None if password is None else password.get_secret_value(),
                    cache_size=k.schema_cache_size,
                )  # fmt: skip
        features: tuple[str, ...] | None = None
        context: tuple[str, ...] = ()
        if isinstance(pipeline.input, FeatureInput):
            detector = pipeline.input.detector
            features = detector.preprocess.schema.names
            if detector.conditional and detector.preprocess.context:
                context = detector.preprocess.context.names
        adapter = InputAdapter(
            pipeline, dead_letter_topic=k.dead_letter_topic, schemas=schemas,
            feature_names=features, context_names=context, header_fields=s.header_fields,
            max_bytes=s.max_message_bytes,
        )  # fmt: skip
        return adapter if adapter.active else pipeline

    def _check_broker(self) -> None:
        """Before the model loads: codecs, the broker's address and the output topics.

        Raises:
            BrokerError: a codec is missing, no broker answers, or an output topic is absent.
        """
        k = self.settings.kafka
        if k.client == "kafka-python" and (missing := missing_codecs()):
            msg = (
                f"kafka-python cannot decompress {', '.join(missing)} here: install "
                "python-snappy, lz4 and zstandard (dependencies of streamvae)"
            )
            raise BrokerError(msg)
        if k.check_topics:
            self._check_output_topics()
        else:
            check_reachable(k)

    def _check_output_topics(self) -> None:
        """Refuse to start when an output topic is missing (sends would block, then fail).

        Raises:
            BrokerError: one line naming the first missing topic and its setting.
        """
        k = self.settings.kafka
        wanted = {"alert_topic": k.alert_topic, "dead_letter_topic": k.dead_letter_topic}
        if k.score_topic is not None:
            wanted["score_topic"] = k.score_topic
        missing = missing_topics(k, tuple(wanted.values()))
        if missing:
            name = next(key for key, topic in wanted.items() if topic == missing[0])
            msg = (
                f"output topic {missing[0]!r} (kafka.{name}) does not exist on "
                f"{k.bootstrap_servers}: create it (or set kafka.check_topics=false where the "
                "broker creates topics on first write)"
            )
            raise BrokerError(msg)

    def _watch(
        self,
        pipeline: ScoringPipeline,
        bundle: ModelBundle,
        ref: ModelRef,
        workdir: Path,
        device: str,
    ) -> None:
        """Start following the model alias (and the shadow model's) when configured."""
        s = self.settings
        interval = s.model_poll_interval_s

        def watcher(uri: str, role: Role, served: str | None) -> ModelWatcher:
            w = ModelWatcher(
                uri, role=role, served_version=served, reference=bundle, workdir=workdir,
                metrics=self.metrics, interval_s=interval, device=device,
                strict=s.strict_versions,
            )  # fmt: skip
            self._watchers.append(w)
            if interval > 0 and uri.startswith("models:/") and "@" in uri:
                w.start()
                self._stack.callback(w.stop)
            return w

        self._pipeline = pipeline
        watcher(s.model_uri, "champion", ref.version)
        if s.shadow_model_uri is None:
            return
        if not isinstance(pipeline.input, FeatureInput):
            logger.warning("shadow scoring applies to feature-vector models; ignoring %s",
                           s.shadow_model_uri)  # fmt: skip
            return
        # the first load of the shadow model goes through the same checks as a swap
        shadow = watcher(s.shadow_model_uri, "shadow", None)
        candidate = shadow.check_once()
        if candidate is not None:
            shadow.take()
            self._install(candidate)

    def _install_candidates(self) -> None:
        """Between two batches: install what the watchers validated."""
        for w in self._watchers:
            candidate = w.take()
            if candidate is not None:
                self._install(candidate)
                if candidate.role == "champion":
                    self.metrics.model_reloads.labels(result="swapped").inc()

    def _install(self, candidate: Candidate) -> None:
        pipeline, ref, bundle = self._pipeline, candidate.ref, candidate.bundle
        assert pipeline is not None, "installed before the pipeline exists"
        if candidate.role == "shadow":
            assert isinstance(pipeline.input, FeatureInput), "shadows are for feature vectors"
            assert isinstance(candidate.detector, TabularDetector)
            pipeline.input.install_shadow(candidate.detector, ref)
            self.metrics.set_shadow(ref, bundle.score_kind)
            logger.info("shadow model %s/%s scoring alongside", ref.name, ref.version)
            return
        pipeline.install(candidate.detector, ref)  # same kind: check_replacement said so
        threshold = pipeline.threshold.default
        self.model = ref
        self.metrics.set_model(
            ref, bundle.score_kind, threshold.value, threshold.expected_alert_rate
        )
        logger.info(
            "model swapped name=%s version=%s score_kind=%s threshold=%.6g",
            ref.name, ref.version, bundle.score_kind, threshold.value,
        )  # fmt: skip

    def _pipeline_for(
        self, bundle: ModelBundle, ref: ModelRef, device: str
    ) -> tuple[ScoringPipeline, Callable[[list[tuple[str, int]]], None]]:
        """The pipeline of the bundle's input kind, and what to do when partitions arrive."""
        s = self.settings
        config = PipelineConfig(
            alert_topic=s.kafka.alert_topic, dead_letter_topic=s.kafka.dead_letter_topic,
            score_topic=s.kafka.score_topic, max_message_bytes=s.max_message_bytes,
            max_records_per_message=s.max_records_per_message, drift_window=s.drift_window,
            drift_min_count=s.drift_min_count,
            hygiene=HygienePolicy(
                cooldown_ms=int(s.alert_cooldown_s * 1000),
                confirm_m=s.alert_confirm_m,
                confirm_n=s.alert_confirm_n,
            ),
        )  # fmt: skip
        kind = input_kind(bundle.preprocess)
        detector = kind.build(bundle, device=device)

        def state_partitions(topic: str) -> int:
            return ensure_state_topic(s.kafka, topic, s.kafka.input_topic)

        source = SERVICE_INPUTS[kind.name](detector, config, s, state_partitions)
        pipeline = ScoringPipeline(source, detector, ref, config)

        def assigned(parts: list[tuple[str, int]]) -> None:
            if isinstance(source, StatefulInput):
                self._restore_state(source, parts)
            self.assigned.set()

        return pipeline, assigned

    def _restore_state(self, source: StatefulInput, parts: list[tuple[str, int]]) -> None:
        """Rebuild the state (KPI windows) of newly assigned partitions from the state topic."""
        topic = source.state_topic
        if topic is None:
            return
        start = time.perf_counter()
        values = read_state(
            self.settings.kafka, topic, {source.state_partition(p) for _, p in parts}
        )
        restored = source.restore(values, parts, now_ms=time.time_ns() // 1_000_000)
        logger.info(
            "window state restored series=%d records=%d partitions=%s in %.2f s",
            restored, len(values), parts, time.perf_counter() - start,
        )  # fmt: skip

    def _checkpoint_before_revoke(self) -> None:
        if self.runner is not None:
            self.runner.checkpoint(commit=False)

    def health(self) -> tuple[bool, dict[str, object]]:
        """Ready (``/readyz``): the loop runs with a model loaded and is not stalled."""
        runner = self.runner
        details: dict[str, object] = {
            "model": None if self.model is None else f"{self.model.name}/{self.model.version}",
            "running": bool(runner and runner.running),
        }
        if runner is not None and runner.last_batch_monotonic is not None:
            details["last_batch_age_s"] = round(time.monotonic() - runner.last_batch_monotonic, 3)
        alive, _ = self.alive()
        running = runner is not None and runner.running
        return bool(self.model is not None and running and alive), details

    def alive(self) -> tuple[bool, dict[str, object]]:
        """Alive (``/healthz``) unless the running loop has stopped polling (see ``liveness``)."""
        runner = self.runner
        return liveness(
            running=runner is not None and runner.running,
            last_poll=None if runner is None else runner.last_poll_monotonic,
            now=time.monotonic(),
            stall_timeout_s=self.settings.stall_timeout_s,
        )

    @property
    def metrics_url(self) -> str:
        """``http://host:port/metrics``."""
        return "" if self.metrics_server is None else f"{self.metrics_server.url}/metrics"

    def run(self, max_messages: int | None = None, idle_timeout_s: float | None = None) -> RunStats:
        """Score until stopped (SIGTERM/SIGINT in the main thread), a limit, or idleness."""
        if self.runner is None:
            msg = "ScoringService.run called outside its context manager"
            raise RuntimeError(msg)
        with self.runner.signals_stop():
            return self.runner.run(max_messages=max_messages, idle_timeout_s=idle_timeout_s)

    def stop(self) -> None:
        """Ask the loop to stop after its current batch."""
        if self.runner is not None:
            self.runner.stop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()
