from __future__ import annotations

from pathlib import Path

import pytest

from streamvae.config import TrackingSettings
from streamvae.errors import ConfigError
from streamvae.tracking import tracking_uri
from streamvae.tracking.store import check_uri, flatten


def test_setting_beats_environment_beats_local_sqlite(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    local = tracking_uri(TrackingSettings(work_dir=str(tmp_path)))
    assert local == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking_uri(TrackingSettings(work_dir=str(tmp_path))) == "http://mlflow:5000"
    explicit = TrackingSettings(tracking_uri="http://other:5000", work_dir=str(tmp_path))
    assert tracking_uri(explicit) == "http://other:5000"


@pytest.mark.parametrize("uri", ["models:/", "models:/name", "runs:/", "no/such/dir"])
def test_malformed_model_uris(uri):
    with pytest.raises(ConfigError, match="model"):
        check_uri(uri)


def test_valid_model_uris(tmp_path: Path):
    for uri in ("models:/a@champion", "models:/a/3", "runs:/abc", str(tmp_path)):
        check_uri(uri)


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
