"""The online path: ports, the per-batch pipeline, the loop, and their wiring."""

from __future__ import annotations

from streamvae.service.app import ScoringService
from streamvae.service.outcome import BatchOutcome
from streamvae.service.pipeline import FeaturePipeline, PipelineConfig
from streamvae.service.runner import RunnerConfig, ServiceRunner

__all__ = [
    "BatchOutcome",
    "FeaturePipeline",
    "PipelineConfig",
    "RunnerConfig",
    "ScoringService",
    "ServiceRunner",
]
