"""Crash-and-rebalance harness: real `streamvae serve` processes, a real broker, seeded faults.

A producer thread streams a labelled data set (normal rows, injected anomalies, malformed
messages) at a steady rate while a seeded chaos loop kill -9s consumers at random moments,
restarts them, and mixes in graceful leaves (SIGTERM) and joins of an extra consumer. When
the stream is over and the group has caught up, every delivery on the score, alert and
dead-letter topics is read back and compared with an undisturbed, in-process scoring of the
same records.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamvae.bundle import TabularDetector, load_bundle
from streamvae.stream.admin import ensure_topics
from tests.factories import feature_message, make_anomalies, make_normal
from tests.integration.kafka_helpers import Topics, kafka_settings, serve_cmd

PARTITIONS = 3


@dataclass
class ChaosReport:
    """What a chaos run did and what it found (losses must be 0)."""

    records: int = 0
    malformed: int = 0
    kills: int = 0
    kills_mid_stream: int = 0
    graceful_leaves: int = 0
    joins: int = 0
    score_deliveries: int = 0
    duplicate_deliveries: int = 0  # beyond the first delivery of each alert_id
    lost: int = 0
    expected_alerts: int = 0
    alerts_after_dedup: int = 0
    alert_mismatches: list[str] = field(default_factory=list)
    inconsistent_redeliveries: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        """One line for the notes."""
        return (
            f"records={self.records} (malformed {self.malformed}) kills={self.kills} "
            f"(mid-stream {self.kills_mid_stream}) "
            f"leaves={self.graceful_leaves} joins={self.joins} deliveries={self.score_deliveries} "
            f"duplicates={self.duplicate_deliveries} lost={self.lost} "
            f"alerts expected={self.expected_alerts} got={self.alerts_after_dedup} "
            f"mismatches={len(self.alert_mismatches)} in {self.seconds:.0f} s"
        )


def _dataset(n: int, seed: int) -> tuple[list[tuple[bytes, bytes]], np.ndarray, list[str], int]:
    """(key, value) messages; the valid rows, their ids; how many are malformed."""
    normal = make_normal(n, seed=seed)
    odd = make_anomalies(max(n // 50, 1), seed=seed + 1) * 3
    rows, ids, messages, malformed = [], [], [], 0
    k = 0
    for i in range(n):
        if i % 50 == 25:
            row, rid = odd[k % len(odd)], f"a{i}"
            k += 1
        else:
            row, rid = normal[i], f"n{i}"
        if i % 97 == 13:
            messages.append((f"bad{i}".encode(), f'{{"id": "bad{i}", "features": [1, 2'.encode()))
            malformed += 1
            continue
        rows.append(row)
        ids.append(rid)
        value = orjson.dumps(feature_message(row, rid=rid, ts=1_700_000_000_000 + i))
        messages.append((rid.encode(), value))
    return messages, np.asarray(rows, np.float32), ids, malformed


class _Consumers:
    """The group's member processes."""

    def __init__(self, cmd: list[str], logs: Path) -> None:
        self.cmd, self.logs = cmd, logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self._log_of: dict[int, Path] = {}
        self._started = 0

    def start(self) -> None:
        self._started += 1
        path = self.logs / f"consumer-{self._started}.log"
        with path.open("wb") as log:
            proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT)
        self._log_of[proc.pid] = path
        self.procs.append(proc)

    def _last_assignment(self, proc: subprocess.Popen[bytes]) -> bytes:
        lines = [
            line
            for line in self._log_of[proc.pid].read_bytes().splitlines()
            if b"partitions assigned" in line or b"partitions revoked" in line
        ]
        return lines[-1] if lines else b""

    def consuming(self) -> list[subprocess.Popen[bytes]]:
        """Members that own partitions now (their last assignment is not empty)."""
        return [p for p in self.procs if b"assigned partitions=[(" in self._last_assignment(p)]

    def wait_stable(self, timeout_s: float = 60.0) -> None:
        """Until every member has its assignment (no rebalance in progress)."""
        deadline = time.monotonic() + timeout_s
        while not all(b"assigned" in self._last_assignment(p) for p in self.procs):
            if time.monotonic() > deadline:
                msg = "the group never settled"
                raise AssertionError(msg)
            time.sleep(0.1)

    def wait_consuming(self, timeout_s: float = 60.0) -> list[subprocess.Popen[bytes]]:
        deadline = time.monotonic() + timeout_s
        while not (owning := self.consuming()):
            if time.monotonic() > deadline:
                msg = "no consumer got partitions"
                raise AssertionError(msg)
            time.sleep(0.1)
        return owning

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        self.procs.remove(proc)

    def leave(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.leave(proc)


def _produce(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], progress: Callable[[], float]
) -> None:
    """Send the stream in 100 chunks, paced by the chaos: chunk j goes out once ``progress()``
    (kills done / kills planned) reaches j / 100 minus a small lead, so the kills land
    throughout the stream rather than after it.
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    chunks = 100
    size = -(-len(messages) // chunks)
    for j in range(chunks):
        while progress() < j / chunks - 0.03:
            time.sleep(0.05)
        for key, value in messages[j * size : (j + 1) * size]:
            producer.send(topic, key=key, value=value)
        time.sleep(0.05)
    producer.flush()
    producer.close()


class _Reader:
    """Reads topics from the beginning, incrementally."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        self.consumer.seek_to_beginning()
        self.records: list[tuple[bytes, tuple[tuple[str, bytes], ...]]] = []

    def poll(self, timeout_ms: int = 200) -> int:
        got = 0
        for records in self.consumer.poll(timeout_ms=timeout_ms, max_records=50_000).values():
            self.records.extend((r.value, tuple(r.headers or ())) for r in records)
            got += len(records)
        return got

    def drain(self, quiet_s: float = 2.0) -> None:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < quiet_s:
            if self.poll():
                quiet_since = time.monotonic()

    def close(self) -> None:
        self.consumer.close()


def run_chaos(
    bootstrap: str,
    bundle_dir: Path,
    work: Path,
    *,
    records: int,
    kills: int,
    seed: int,
    catch_up_s: float = 180.0,
) -> ChaosReport:
    """Stream ``records`` through 2-3 consumers while killing one ``kills`` times."""
    started = time.monotonic()
    rng = random.Random(seed)
    topics = Topics.unique()
    ensure_topics(
        kafka_settings(bootstrap, topics),
        (topics.input, topics.alerts, topics.dead, topics.scores),
        partitions=PARTITIONS,
    )
    messages, rows, ids, malformed = _dataset(records, seed)
    report = ChaosReport(records=len(messages), malformed=malformed)
    cmd = serve_cmd(bootstrap, topics, bundle_dir, work, commit_interval_s=0.5)
    group = _Consumers(cmd, work)
    group.start()
    group.start()
    producer = threading.Thread(
        target=_produce,
        args=(bootstrap, topics.input, messages, lambda: report.kills / kills),
        daemon=True,
    )
    scores, dead = _Reader(bootstrap, topics.scores), _Reader(bootstrap, topics.dead)
    try:
        group.wait_consuming()
        producer.start()
        while report.kills < kills:
            # strike a member while it owns partitions and works, at a random moment
            victim = rng.choice(group.wait_consuming())
            time.sleep(rng.uniform(0.1, 1.5))
            event = rng.random()
            if victim.poll() is not None:
                continue
            if event < 0.8:
                group.kill(victim)
                report.kills += 1
                report.kills_mid_stream += int(producer.is_alive())
                group.start()
            elif event < 0.9 or len(group.procs) >= 3:
                # Tansu 0.6 quirk: a LeaveGroup during a rebalance left the group without
                # assignments for good (members joining later never got partitions), so
                # graceful leaves wait for a settled group; kills strike at any moment
                group.wait_stable()
                if victim.poll() is not None:
                    continue
                group.leave(victim)
                report.graceful_leaves += 1
                group.start()
            else:
                group.start()
                report.joins += 1
        producer.join()
        missing, seen_dead, parsed = set(ids), set(), 0
        deadline = time.monotonic() + catch_up_s
        while time.monotonic() < deadline and (missing or len(seen_dead) < malformed):
            scores.poll(500)
            dead.poll(0)
            missing -= {orjson.loads(v)["id"] for v, _ in scores.records[parsed:]}
            parsed = len(scores.records)
            seen_dead = {dict(h)["source"] for _, h in dead.records}
        group.stop_all()
        scores.drain()
        dead.drain()
        alerts = _Reader(bootstrap, topics.alerts)
        alerts.drain()
        alerts.close()
    finally:
        with contextlib.suppress(Exception):
            group.stop_all()
        scores.close()
        dead.close()
    _check(report, rows, ids, bundle_dir, scores.records, dead.records, alerts.records)
    report.seconds = time.monotonic() - started
    return report


def _check(
    report: ChaosReport,
    rows: np.ndarray,
    ids: list[str],
    bundle_dir: Path,
    score_records: list[tuple[bytes, tuple[tuple[str, bytes], ...]]],
    dead_records: list[tuple[bytes, tuple[tuple[str, bytes], ...]]],
    alert_records: list[tuple[bytes, tuple[tuple[str, bytes], ...]]],
) -> None:
    detector = TabularDetector(load_bundle(bundle_dir))
    offline = detector.select(detector.score(rows))
    threshold = detector.threshold.default.value
    expected = {rid for rid, s in zip(ids, offline, strict=True) if s > threshold}
    offline_by_id = dict(zip(ids, offline.tolist(), strict=True))

    deliveries: dict[str, list[dict]] = defaultdict(list)
    for value, _ in score_records:
        record = orjson.loads(value)
        deliveries[record["alert_id"]].append(record)
    report.score_deliveries = len(score_records)
    report.duplicate_deliveries = len(score_records) - len(deliveries)
    first = {copies[0]["id"]: copies for copies in deliveries.values()}
    report.inconsistent_redeliveries = sum(
        1
        for copies in deliveries.values()
        if len({(c["id"], c["score"], c["severity"]) for c in copies}) > 1
    )
    dead_sources = {dict(h)["source"] for _, h in dead_records}
    report.lost = len(set(ids) - set(first)) + (report.malformed - len(dead_sources))

    alerted: dict[str, dict] = {}
    for value, _ in alert_records:
        record = orjson.loads(value)
        alerted.setdefault(record["alert_id"], record)
    got = {a["id"] for a in alerted.values()}
    report.expected_alerts, report.alerts_after_dedup = len(expected), len(alerted)
    for rid in sorted(expected ^ got):
        online = first.get(rid, [{}])[0].get("score")
        report.alert_mismatches.append(
            f"{rid}: offline {offline_by_id.get(rid)} online {online} threshold {threshold}"
        )
