"""The online path: ports, the scoring pipeline and each input kind's part, the loop, the wiring."""

from __future__ import annotations

from streamvae.service.app import ScoringService
from streamvae.service.outcome import BatchOutcome
from streamvae.service.runner import RunnerConfig, ServiceRunner
from streamvae.service.scoring import KindInput, PipelineConfig, ScoringPipeline

__all__ = [
    "BatchOutcome",
    "KindInput",
    "PipelineConfig",
    "RunnerConfig",
    "ScoringPipeline",
    "ScoringService",
    "ServiceRunner",
]
