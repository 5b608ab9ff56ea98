"""The input-kind seam: the registries agree, the architecture doc names them, and a fourth
(toy) kind plugs in from this module alone, with one entry in each registry.

The toy kind reads single numbers ``{"reading": x}`` and scores ``|x - centre| / scale``;
its bundle still carries a (tiny, untrained) VAE so that it saves and loads like any other.
Everything else it gets from the shared code: bundle I/O, the compatibility check, the
probe, the scoring pipeline (decide, record, gate, route) and the service's wiring.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import orjson
import pytest

from streamvae.bundle import (
    INPUT_KINDS,
    InputKind,
    ModelBundle,
    check_replacement,
    input_kind,
    load_bundle,
    probe,
    save_bundle,
)
from streamvae.bundle.model import thresholds_in_force
from streamvae.config import KafkaSettings, ServeSettings
from streamvae.errors import ModelLoadError, PayloadDecodeError
from streamvae.metrics import Registry
from streamvae.models import MODEL_REGISTRY, VAE, VAEConfig
from streamvae.service import PipelineConfig, ScoringService
from streamvae.service.kinds import SERVICE_INPUTS
from streamvae.service.outcome import BatchOutcome, decode_records, record_bytes
from streamvae.service.scoring import ScoringPipeline
from streamvae.thresholds import AlertGate, ThresholdSet, calibrate_percentile
from streamvae.tracking.pyfunc_model import PREDICTORS
from streamvae.types import InboundMessage, ModelRef, OutboundMessage

ROOT = Path(__file__).resolve().parents[2]


def test_every_registry_names_the_same_input_kinds():
    kinds = set(INPUT_KINDS)
    assert kinds == {"tabular", "window", "image"}
    assert set(SERVICE_INPUTS) == kinds, "each kind has its part of the scoring pipeline"
    assert set(PREDICTORS) == kinds, "the MLflow pyfunc scores each kind"
    served = set().union(*(spec.kinds for spec in MODEL_REGISTRY.values()))
    assert served == kinds, "every kind has a model family, every family a known kind"
    for name, kind in INPUT_KINDS.items():
        assert kind.name == name and name == kind.preprocess.KIND


def test_the_architecture_doc_names_every_registry_and_kind():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for registry in ("INPUT_KINDS", "SERVICE_INPUTS", "MODEL_REGISTRY", "PREDICTORS"):
        assert registry in text, f"docs/architecture.md does not mention {registry}"
    for kind in INPUT_KINDS:
        assert f"`{kind}`" in text, f"docs/architecture.md does not name the kind {kind!r}"
    for path in re.findall(r"`(streamvae/[\w/]+\.py)`", text):
        assert (ROOT / path).is_file(), f"docs/architecture.md names a missing file {path}"


# ----------------------------------------------------------------------------- the toy kind


@dataclass(frozen=True, slots=True)
class ReadingPreprocess:
    """One number per message, centred and scaled."""

    KIND: ClassVar[str] = "toy"
    centre: float
    scale: float

    @property
    def feature_names(self) -> tuple[str, ...]:
        return ("reading",)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, "centre": self.centre, "scale": self.scale}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ReadingPreprocess:
        return cls(float(values["centre"]), float(values["scale"]))

    def input_change(self, old: ReadingPreprocess) -> str | None:
        return None if old.scale == self.scale else f"scale changed: {old.scale} -> {self.scale}"


class ReadingDetector:
    """``|x - centre| / scale``."""

    def __init__(self, bundle: ModelBundle, *, device: str = "cpu") -> None:
        del device
        self.bundle = bundle
        self.preprocess: ReadingPreprocess = bundle.preprocess  # type: ignore[assignment]

    @property
    def threshold(self) -> ThresholdSet:
        return thresholds_in_force(self.bundle.threshold)

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.abs(np.asarray(x, np.float64) - self.preprocess.centre) / self.preprocess.scale

    def probe(self) -> np.ndarray:
        return self.score(np.array([self.preprocess.centre]))


@dataclass(slots=True)
class ReadingRows:
    """The scored readings of one poll."""

    sources: list[tuple[InboundMessage, int, float]]
    score: np.ndarray
    components: dict[str, np.ndarray]
    event_ts: np.ndarray
    segments: list[str | None] | None = None

    def gate_key(self, row: int) -> str | None:
        key = self.sources[row][0].key
        return key.decode() if key else None

    def head(self, row: int) -> dict[str, Any]:
        message, index, _ = self.sources[row]
        return {
            "alert_id": f"{message.topic}:{message.partition}:{message.offset}:{index}",
            "id": None,
            "key": self.gate_key(row),
            "ts": message.timestamp_ms,
        }

    def out_key(self, row: int, record: dict[str, Any]) -> bytes | None:
        return self.sources[row][0].key

    def explain(self, rows: list[int], outcome: BatchOutcome) -> list[dict[str, Any] | None]:
        return [{"reading": self.sources[r][2]} for r in rows]


class ReadingInput:
    """The toy kind's part of the scoring pipeline."""

    payload = "records"

    def __init__(self, detector: ReadingDetector, config: PipelineConfig) -> None:
        self.config, self.detector, self.gate = config, detector, AlertGate(config.hygiene)

    def install(self, detector: ReadingDetector, model: ModelRef) -> ThresholdSet:
        self.detector = detector
        return detector.threshold

    def collect(
        self, messages: list[InboundMessage], outcome: BatchOutcome, now_ms: int
    ) -> ReadingRows | None:
        sources = []
        for message in messages:
            try:
                records = decode_records(message, max_bytes=1_000, max_records=10)
            except PayloadDecodeError as exc:
                outcome.reject(self.config.dead_letter_topic, message, exc)
                continue
            outcome.records_consumed += len(records)
            for index, record in enumerate(records):
                value = record.get("reading") if isinstance(record, dict) else None
                if not isinstance(value, int | float) or not math.isfinite(value):
                    exc = PayloadDecodeError(reason="invalid_record", detail="no finite reading")
                    raw = record_bytes(message, record)
                    outcome.dead_letter(self.config.dead_letter_topic, message, index, raw, exc)
                    continue
                sources.append((message, index, float(value)))
        if not sources:
            return None
        score = self.detector.score(np.array([v for _, _, v in sources]))
        stamps = np.array([m.timestamp_ms or 0 for m, _, _ in sources], np.int64)
        return ReadingRows(sources, score, {"distance": score}, stamps)

    def finish(self, outcome: BatchOutcome, now_ms: int) -> None:
        pass

    def checkpoint_messages(self) -> list[OutboundMessage]:
        return []


TOY = InputKind("toy", "readings", ReadingPreprocess, ReadingDetector, ("neg_elbo",))


def _toy_input(detector, config, settings, state_partitions):
    return ReadingInput(detector, config)


@pytest.fixture
def toy_kind(monkeypatch):
    """The one line a new kind adds to each registry."""
    monkeypatch.setitem(INPUT_KINDS, "toy", TOY)
    monkeypatch.setitem(SERVICE_INPUTS, "toy", _toy_input)


def _toy_bundle(scale: float = 2.0) -> ModelBundle:
    config = VAEConfig(input_dim=1, latent_dim=1, hidden_dims=(2,))
    calibration = np.abs(np.random.default_rng(0).normal(size=500))  # |x - centre| / scale
    threshold = calibrate_percentile(calibration, 99.0, score_kind="neg_elbo")
    return ModelBundle(
        "vae", asdict(config), VAE(config).state_dict(), ReadingPreprocess(10.0, scale),
        threshold=ThresholdSet(default=threshold, reference={"": np.sort(calibration)}),
    )  # fmt: skip


def test_a_toy_kind_saves_loads_swaps_and_probes_through_the_shared_code(toy_kind, tmp_path):
    bundle = _toy_bundle()
    loaded = load_bundle(save_bundle(bundle, tmp_path / "toy"))
    assert loaded.preprocess == ReadingPreprocess(10.0, 2.0)
    assert input_kind(loaded.preprocess) is TOY
    check_replacement(loaded, _toy_bundle())
    with pytest.raises(ModelLoadError, match="scale changed: 2.0 -> 3.0"):
        check_replacement(loaded, _toy_bundle(scale=3.0))
    assert isinstance(probe(loaded), ReadingDetector)


def test_a_toy_kind_is_served_by_the_one_scoring_pipeline(toy_kind):
    settings = ServeSettings(kafka=KafkaSettings(score_topic="scores"))
    service = ScoringService(settings, registry=Registry())
    pipeline, _ = service._pipeline_for(_toy_bundle(), ModelRef("toy", "1"), "cpu")
    assert isinstance(pipeline, ScoringPipeline) and isinstance(pipeline.input, ReadingInput)

    def message(offset: int, value: bytes) -> InboundMessage:
        return InboundMessage("readings", 0, offset, value, b"sensor-1", 1_000 + offset)

    values = [b'{"reading": 10.5}', b'{"reading": 30.0}', b'{"reading": "hot"}', b"{oops"]
    out = pipeline.handle([message(i, v) for i, v in enumerate(values)], now_ms=5_000)
    assert out.records_consumed == 4 and out.records_scored == 2
    assert dict(out.dead_letters) == {"invalid_record": 1, "invalid_json": 1}
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for m in out.outbound:
        if m.value is not None and m.topic != settings.kafka.dead_letter_topic:
            by_topic.setdefault(m.topic, []).append(orjson.loads(m.value))
    # beyond all 500 calibration scores: p = 1/501, over the critical band's 0.001
    assert [r["severity"] for r in by_topic["scores"]] == ["normal", "warning"]
    (alert,) = by_topic[settings.kafka.alert_topic]
    assert alert["alert_id"] == "readings:0:1:0" and alert["key"] == "sensor-1"
    assert alert["score"] == pytest.approx(10.0) and alert["components"] == {"distance": 10.0}
    assert alert["model"] == {"name": "toy", "version": "1"} and alert["scored_at"] == 5_000
    assert alert["explanation"] == {"reading": 30.0}
    assert set(alert) == set(by_topic["scores"][1]) | {"explanation"}, "one record contract"
