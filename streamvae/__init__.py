"""streamvae: streaming anomaly detection with variational autoencoders."""

from __future__ import annotations

__version__ = "0.1.0"
