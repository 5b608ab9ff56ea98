"""The service's part of each input kind: how its scoring pipeline is built from the settings.

Keyed like ``streamvae.bundle.INPUT_KINDS`` (the bundle's ``preprocess.json`` ``kind``); the
contract tests check that both registries name the same kinds. A builder receives the
kind's detector, the shared :class:`PipelineConfig`, the service settings and
``state_partitions`` (creates a state topic when missing and returns its partition count:
for kinds that keep state) and returns the kind's :class:`KindInput`; the app wraps it in
the one :class:`~streamvae.service.scoring.ScoringPipeline`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamvae.config import ServeSettings
from streamvae.service.features import FeatureInput
from streamvae.service.images import ImageInput, ImageMaps
from streamvae.service.kpi import KpiInput, KpiState
from streamvae.service.scoring import KindInput, PipelineConfig

StatePartitions = Callable[[str], int]


def _features(
    detector: Any, config: PipelineConfig, settings: ServeSettings, state: StatePartitions
) -> KindInput:
    del state
    return FeatureInput(config, top_features=settings.top_features)


def _windows(
    detector: Any, config: PipelineConfig, settings: ServeSettings, state: StatePartitions
) -> KindInput:
    topic = settings.kafka.state_topic or f"{settings.kafka.input_topic}-state"
    kpi = KpiState(
        state_topic=topic, state_partitions=state(topic),
        max_series=settings.kpi_max_series, series_ttl_s=settings.kpi_series_ttl_s,
    )  # fmt: skip
    return KpiInput(detector, config, kpi)


def _images(
    detector: Any, config: PipelineConfig, settings: ServeSettings, state: StatePartitions
) -> KindInput:
    del state
    maps = ImageMaps(
        maps=settings.image_maps, map_dir=settings.image_map_dir,
        map_max_files=settings.image_map_max_files,
    )  # fmt: skip
    return ImageInput(detector, config, maps)


InputBuilder = Callable[[Any, PipelineConfig, ServeSettings, StatePartitions], KindInput]

SERVICE_INPUTS: dict[str, InputBuilder] = {
    "tabular": _features,
    "window": _windows,
    "image": _images,
}
"""The registry: input kind -> the builder of its part of the scoring pipeline."""
