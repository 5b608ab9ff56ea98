"""The poll -> handle -> produce -> flush -> commit loop (at-least-once), with stop conditions."""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from streamvae.errors import DependencyError, ProcessingHaltedError
from streamvae.metrics import ServiceMetrics
from streamvae.service.outcome import BatchOutcome, fit_output, output_size
from streamvae.service.ports import MessageSink, MessageSource
from streamvae.thresholds import DriftSnapshot
from streamvae.types import InboundMessage, OutboundMessage, RunStats

logger = logging.getLogger(__name__)


class BatchHandler(Protocol):
    """A pipeline: messages of one poll in, everything to produce out."""

    def handle(self, messages: list[InboundMessage], now_ms: int) -> BatchOutcome:
        """Handle one poll."""
        ...

    def drift_snapshot(self) -> DriftSnapshot:
        """Live scores against the calibration scores."""
        ...

    def checkpoint_messages(self) -> list[OutboundMessage]:
        """State to persist once the outputs are flushed (KPI windows), before the commit."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerConfig:
    """Loop settings."""

    poll_timeout_ms: int = 200
    max_poll_records: int = 2_000
    commit_interval_s: float = 1.0  # 0: flush and commit after every batch
    drift_interval_s: float = 1.0  # how often the drift gauges are recomputed
    gc_interval_s: float | None = None  # collect garbage between batches (automatic GC off)
    target_batch_records: int = 5_000  # poll fewer messages when each carries many records
    dead_letter_topic: str = "dead-letters"
    # an exception while handling a batch: isolate it to its messages and dead-letter them
    # (reason processing_error), or re-raise without committing (``fail``)
    on_processing_error: Literal["dead_letter", "fail"] = "dead_letter"
    max_consecutive_failures: int = 100  # messages in a row: then the handler is broken
    max_output_bytes: int = 1_000_000  # larger outputs are truncated or dead-lettered


def wall_clock_ms() -> int:
    """Current Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


def poll_limit(
    records_per_message: float, *, max_poll_records: int, target_batch_records: int
) -> int:
    """Messages to poll so a batch holds about ``target_batch_records`` records.

    Batched messages (JSON arrays) carry many records each; a poll of ``max_poll_records`` of
    them would make batches of hundreds of thousands of records.
    """
    by_records = int(target_batch_records / max(records_per_message, 1.0))
    return max(1, min(max_poll_records, by_records))


def liveness(
    *, running: bool, last_poll: float | None, now: float, stall_timeout_s: float
) -> tuple[bool, dict[str, object]]:
    """Whether the scoring loop is alive, with details for ``/healthz``.

    Only a running loop that has not polled for ``stall_timeout_s`` is dead. Starting up (model
    download, window-state restore) counts as alive: a liveness probe must not kill a slow
    start; readiness holds traffic back meanwhile.
    """
    if not running or last_poll is None:
        return True, {"loop": "up" if running else "starting"}
    age = now - last_poll
    stalled = age > stall_timeout_s
    return not stalled, {"loop": "stalled" if stalled else "up", "last_poll_age_s": round(age, 3)}


class ServiceRunner:
    """Runs the scoring loop until stopped, ``max_messages`` consumed or idle too long.

    Per batch: handle and send every output. Every ``commit_interval_s`` (and at the end):
    flush (raises if a send failed), mark the handled offsets processed, commit. A crash
    before a flush succeeds commits nothing, so those records are consumed again:
    at-least-once, nothing lost.

    Processing errors: when handling a batch raises (a bug, a model that fails on some input),
    the batch is handled again message by message; a message that still raises goes to the
    dead-letter topic (reason ``processing_error``) and the rest are scored, so one poison
    record cannot stall its partition. ``max_consecutive_failures`` messages failing in a row
    means the handler itself is broken: the loop stops with ``ProcessingHaltedError`` and
    commits nothing, rather than dead-lettering the whole stream.
    """

    def __init__(
        self,
        source: MessageSource,
        sink: MessageSink,
        handler: BatchHandler,
        metrics: ServiceMetrics,
        config: RunnerConfig,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.source, self.sink, self.handler = source, sink, handler
        self.metrics, self.config, self.clock_ms = metrics, config, clock_ms
        self._stop = threading.Event()
        self.running = False
        self.last_batch_monotonic: float | None = None
        self.last_poll_monotonic: float | None = None  # liveness: the loop keeps polling
        # called in the loop's thread before every poll: a model swap lands between batches
        self.between_batches: list[Callable[[], None]] = []
        self._last_drift = -float("inf")
        self._pending: dict[tuple[str, int], int] = {}  # handled, not yet flushed and marked
        self._last_gc = time.monotonic()
        self._last_full_gc = self._last_gc
        self._consecutive_failures = 0  # messages failing in a row
        self._failed_batches = 0  # failed batches in a row whose retry scored nothing
        self._last_traceback = -float("inf")

    def stop(self) -> None:
        """Ask the loop to finish its batch, flush, commit and return."""
        self._stop.set()

    @contextmanager
    def signals_stop(self) -> Iterator[None]:
        """While active, SIGTERM and SIGINT stop the loop gracefully (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in previous:
            signal.signal(sig, lambda signum, frame: self.stop())
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def run(self, max_messages: int | None = None, idle_timeout_s: float | None = None) -> RunStats:
        """Loop until stopped; returns what was done.

        Args:
            max_messages: stop after this many Kafka messages (``None``: no limit).
            idle_timeout_s: stop after this long without a message (``None``: never).
        """
        totals = _Totals()
        started = last_activity = time.monotonic()
        last_commit = started
        self.running = True
        self.metrics.up.set(1)
        try:
            while not self._stop.is_set():
                remaining = None if max_messages is None else max_messages - totals.messages
                if remaining is not None and remaining <= 0:
                    break
                for hook in self.between_batches:
                    hook()
                limit = min(self._poll_limit(totals), remaining or self.config.max_poll_records)
                messages = self.source.poll(self.config.poll_timeout_ms, limit)
                now = self.last_poll_monotonic = time.monotonic()
                if not messages:
                    # a quiet stream still gets its handled records committed when due
                    if self._pending and now - last_commit >= self.config.commit_interval_s:
                        self.checkpoint()
                        last_commit = now
                    if idle_timeout_s is not None and now - last_activity >= idle_timeout_s:
                        break
                    continue
                last_activity = now
                totals.first_message = totals.first_message or now
                self._process(messages, totals)
                if now - last_commit >= self.config.commit_interval_s:
                    self.checkpoint()
                    last_commit = now
                self._collect_garbage(now)
            self.checkpoint()
            self.metrics.set_drift(self.handler.drift_snapshot())
        finally:
            self.running = False
            self.metrics.up.set(0)
        ended = time.monotonic()
        return totals.stats(ended - started, ended - (totals.first_message or ended))

    def _poll_limit(self, totals: _Totals) -> int:
        per_message = totals.consumed / totals.messages if totals.messages else 1.0
        return poll_limit(
            per_message,
            max_poll_records=self.config.max_poll_records,
            target_batch_records=self.config.target_batch_records,
        )

    def _collect_garbage(self, now: float) -> None:
        """Young-generation collection between batches, a full one every minute.

        Used with the automatic collector off (see ``ScoringService``): a batch allocates
        a dict per record, and automatic collections in the middle of a batch promote all of
        them to older generations, whose collections then grow with the batch size.
        """
        interval = self.config.gc_interval_s
        if interval is None or now - self._last_gc < interval:
            return
        full = now - self._last_full_gc >= 60.0
        gc.collect(2 if full else 0)
        self._last_gc = now
        if full:
            self._last_full_gc = now

    def checkpoint(self, *, commit: bool = True) -> None:
        """Flush every output sent so far, mark their inputs processed, then commit.

        Outputs are sent as each batch is handled (the producer delivers them within its
        linger time); the flush that guarantees delivery happens here, before the commit,
        so a crash at any point commits nothing that was not delivered.

        Args:
            commit: also commit; the rebalance listener passes ``False`` and commits the
                revoked partitions itself.
        """
        try:
            self.sink.flush()
            # state goes out only after the outputs it covers are delivered: a restart that
            # restores it never skips an input whose alert was lost
            state = self.handler.checkpoint_messages()
            for message in state:
                self._send(message)
            if state:
                self.sink.flush()
        except Exception:
            self.metrics.errors.labels(kind="produce").inc()
            raise
        self.source.mark_processed(self._pending)
        self._pending = {}
        if not commit:
            return
        try:
            self.source.commit()
        except Exception:
            self.metrics.errors.labels(kind="commit").inc()
            raise

    def _process(self, messages: list[InboundMessage], totals: _Totals) -> None:
        start = time.perf_counter()
        now_ms = self.clock_ms()
        try:
            outcome = self.handler.handle(messages, now_ms)
        except DependencyError:  # an outage, not the input: retry after a restart
            self.metrics.errors.labels(kind="dependency").inc()
            raise
        except Exception as exc:  # a model or internal error, not bad input
            self.metrics.errors.labels(kind="scoring").inc()
            if self.config.on_processing_error == "fail":
                raise
            self._log_failure(messages, exc)
            outcome = self._isolate(messages, now_ms)
            self._count_failed_batch(outcome, exc)
        else:
            self._consecutive_failures = self._failed_batches = 0
        for message in outcome.outbound:
            self._send(message)
        self._pending.update(outcome.offsets)  # offsets only grow within a partition
        self.last_batch_monotonic = time.monotonic()
        self._observe(outcome, len(messages), time.perf_counter() - start)
        totals.add(outcome, len(messages))

    def _isolate(self, messages: list[InboundMessage], now_ms: int) -> BatchOutcome:
        """Handle a failed batch again, message by message; dead-letter those that fail.

        Raises:
            ProcessingHaltedError: ``max_consecutive_failures`` messages failed in a row.
        """
        outcome = BatchOutcome()
        for message in messages:
            try:
                part = self.handler.handle([message], now_ms)
            except DependencyError:
                self.metrics.errors.labels(kind="dependency").inc()
                raise
            except Exception as exc:
                self._consecutive_failures += 1
                where = f"{message.topic}:{message.partition}:{message.offset}"
                if self._consecutive_failures >= self.config.max_consecutive_failures:
                    n = self._consecutive_failures
                    msg = f"{n} messages in a row failed, the last at {where}"
                    raise _halted(msg, exc) from exc
                logger.warning(
                    "processing error at %s: %s: %.200s; message dead-lettered",
                    where, type(exc).__name__, exc,
                )  # fmt: skip
                outcome.processing_error(self.config.dead_letter_topic, message, exc)
                continue
            self._consecutive_failures = 0
            outcome.merge(part)
        return outcome

    def _count_failed_batch(self, retried: BatchOutcome, exc: Exception) -> None:
        """Stop when batch after batch fails and its retry scores nothing.

        A stateful pipeline (KPI windows) has absorbed a failed batch's points before the
        model failed, so its retry counts them as replayed instead of failing again: without
        this, a model that fails on every window would leave the stream unscored forever.

        Raises:
            ProcessingHaltedError: ``max_consecutive_failures`` such batches in a row.
        """
        if retried.records_scored:
            self._failed_batches = 0
            return
        self._failed_batches += 1
        if self._failed_batches >= self.config.max_consecutive_failures:
            what = (
                f"{self._failed_batches} batches in a row failed and their retries scored nothing"
            )
            raise _halted(what, exc) from exc

    def _log_failure(self, messages: list[InboundMessage], exc: Exception) -> None:
        """Log a failed batch; with its traceback at most once a minute (a poison stream)."""
        now = time.monotonic()
        with_traceback = now - self._last_traceback >= 60.0
        if with_traceback:
            self._last_traceback = now
        logger.warning(
            "handling a batch of %d messages failed (%s: %.200s); retrying message by message",
            len(messages), type(exc).__name__, exc, exc_info=exc if with_traceback else None,
        )  # fmt: skip

    def _send(self, message: OutboundMessage) -> None:
        """Send one output; one over ``max_output_bytes`` is cut to fit (see ``fit_output``)."""
        fitted = fit_output(message, self.config.max_output_bytes, self.config.dead_letter_topic)
        if fitted is not message:
            self.metrics.errors.labels(kind="output_too_large").inc()
            logger.warning(
                "an output of %d bytes to %s exceeds max_output_bytes=%d: sent as %s",
                output_size(message), message.topic, self.config.max_output_bytes,
                "a truncated dead letter" if fitted.topic == message.topic else "a dead letter",
            )  # fmt: skip
        self.sink.send(fitted)

    def _observe(self, outcome: BatchOutcome, n_messages: int, elapsed_s: float) -> None:
        m = self.metrics
        m.messages_consumed.inc(n_messages)
        m.records_consumed.inc(outcome.records_consumed)
        m.records_scored.inc(outcome.records_scored)
        m.count_by(m.records_dead_lettered, "reason", outcome.dead_letters)
        m.count_by(m.alerts, "severity", outcome.alerts)
        m.count_by(m.records_unscored, "status", outcome.unscored)
        m.count_by(m.alerts_suppressed, "reason", outcome.suppressed)
        m.count_by(m.errors, "kind", outcome.errors)
        if outcome.shadow_scored:
            m.shadow_scored.inc(outcome.shadow_scored)
            m.count_by(m.shadow_alerts, "severity", outcome.shadow_alerts)
        if outcome.series_live is not None:
            m.series_live.set(outcome.series_live)
        if outcome.state_bytes is not None:
            m.state_bytes.set(outcome.state_bytes)
        m.scoring_seconds.observe(elapsed_s)
        m.batch_size.observe(outcome.records_consumed)
        m.score_ratio.observe_many(outcome.score_ratios)
        if outcome.event_ts_ms.size:
            stamped = outcome.event_ts_ms[outcome.event_ts_ms > 0]
            m.end_to_end_seconds.observe_many(np.maximum((self.clock_ms() - stamped) / 1000.0, 0.0))
        m.set_lag(self.source.lag())
        m.last_batch_timestamp.set(self.clock_ms() / 1000.0)
        now = time.monotonic()
        if now - self._last_drift >= self.config.drift_interval_s:
            m.set_drift(self.handler.drift_snapshot())
            self._last_drift = now


def _halted(what: str, exc: Exception) -> ProcessingHaltedError:
    return ProcessingHaltedError(
        f"{what} ({type(exc).__name__}: {exc!s:.200}); the model or the service is broken, "
        "not the input: stopping without committing"
    )


class _Totals:
    def __init__(self) -> None:
        self.messages = 0
        self.consumed = 0
        self.scored = 0
        self.alerted = 0
        self.dead: Counter[str] = Counter()
        self.unscored: Counter[str] = Counter()
        self.first_message: float | None = None

    def add(self, outcome: BatchOutcome, n_messages: int) -> None:
        self.messages += n_messages
        self.consumed += outcome.records_consumed
        self.scored += outcome.records_scored
        self.alerted += sum(outcome.alerts.values())
        self.dead.update(outcome.dead_letters)
        self.unscored.update(outcome.unscored)

    def stats(self, elapsed_s: float, active_s: float) -> RunStats:
        return RunStats(
            messages=self.messages,
            consumed=self.consumed,
            scored=self.scored,
            alerted=self.alerted,
            dead_lettered=sum(self.dead.values()),
            dead_letter_reasons=dict(self.dead),
            unscored=dict(self.unscored),
            elapsed_s=elapsed_s,
            active_s=active_s,
        )
