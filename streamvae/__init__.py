"""streamvae: streaming anomaly detection with variational autoencoders.

The Python API (:mod:`streamvae.api`), imported on first use so that ``import streamvae``
stays light (no torch or MLflow until a model is loaded):

- ``streamvae.load(uri) -> Model`` with ``score``, ``predict``, ``p_values``, ``explain``,
  ``decide``;
- ``streamvae.fit(data, config=None, overrides=()) -> TrainOutcome``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamvae._version import __version__

__all__ = ["Model", "__version__", "fit", "load"]

if TYPE_CHECKING:
    from streamvae.api import Model, fit, load


def __getattr__(name: str) -> Any:
    if name in ("Model", "fit", "load"):
        from streamvae import api

        return getattr(api, name)
    msg = f"module 'streamvae' has no attribute {name!r}"
    raise AttributeError(msg)
