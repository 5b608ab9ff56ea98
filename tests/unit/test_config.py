from __future__ import annotations

import pytest

from streamvae.config import ServeSettings, TrainSettings, load_settings, parse_overrides
from streamvae.errors import ConfigError


def test_overrides_parse_yaml_values():
    assert parse_overrides(["a.b=1", "a.c=[1, 2]", "d=true", "e=text", "f="]) == {
        "a": {"b": 1, "c": [1, 2]},
        "d": True,
        "e": "text",
        "f": None,
    }


@pytest.mark.parametrize("pair", ["novalue", "=3", "a..b=1"])
def test_bad_override_names_it(pair):
    with pytest.raises(ConfigError, match="bad --set"):
        parse_overrides([pair])


def test_precedence_set_over_env_over_yaml(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  epochs: 5\n  batch_size: 32\nmodel:\n  beta: 2.0\n")
    monkeypatch.setenv("STREAMVAE_TRAINING__EPOCHS", "7")
    monkeypatch.setenv("STREAMVAE_MODEL__LATENT_DIM", "3")
    s = load_settings(TrainSettings, path, ["model.latent_dim=4"])
    assert s.training.epochs == 7  # env beats YAML
    assert s.training.batch_size == 32  # YAML beats default
    assert s.model.latent_dim == 4  # --set beats env
    assert s.model.beta == 2.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.epochs=0", "training.epochs"),
        ("traning.epochs=3", "traning"),
        ("model.score_kind=bogus", "model.score_kind"),
        ("calibration.percentile=100", "calibration.percentile"),
    ],
)
def test_invalid_values_are_one_line_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(TrainSettings, None, [override])
    assert "\n" not in str(info.value)


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(TrainSettings, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(TrainSettings, bad)


def test_yaml_syntax_errors_name_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  beta: 2\n   latent_dim: 3\n")
    with pytest.raises(ConfigError) as info:
        load_settings(TrainSettings, bad)
    assert "at line 3, column 14: mapping values are not allowed here" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.betta=2", "unknown setting model.betta (did you mean 'beta'?)"),
        ("trainig.epochs=3", "unknown setting trainig (did you mean 'training'?)"),
        ("calibration.percentil=99", "(did you mean 'percentile'?)"),
    ],
)
def test_unknown_keys_suggest_the_closest_setting(override, expected):
    with pytest.raises(ConfigError) as info:
        load_settings(TrainSettings, None, [override])
    assert expected in str(info.value)


def test_an_unknown_key_with_no_close_match_lists_the_section():
    with pytest.raises(ConfigError, match=r"unknown setting model\.zzzzz; known: name, latent_dim"):
        load_settings(TrainSettings, None, ["model.zzzzz=1"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vea", "unknown model 'vea' (did you mean 'vae'?); tabular models: vae, sparse_vae"),
        ("conv2d_vae", "model 'conv2d_vae' is not for tabular data (train it with train-images)"),
        ("conv1d_vae", "(train it with train-kpi)"),
    ],
)
def test_tabular_model_names_are_checked_when_settings_load(name, expected):
    with pytest.raises(ConfigError) as info:
        load_settings(TrainSettings, None, [f"model.name={name}"])
    assert expected in str(info.value)


def test_model_lists_cover_the_registry():
    from streamvae.models import MODEL_REGISTRY
    from streamvae.types import IMAGE_MODELS, KPI_MODELS, MODEL_KINDS, TABULAR_MODELS

    assert set(TABULAR_MODELS) | set(KPI_MODELS) | set(IMAGE_MODELS) == set(MODEL_REGISTRY)
    assert list(MODEL_KINDS) == list(MODEL_REGISTRY), "the torch-free list names every family"
    for name, spec in MODEL_REGISTRY.items():
        assert spec.kinds == MODEL_KINDS[name]


def test_errors_name_the_option_the_user_typed_not_the_field():
    extra = {"kafka": {"bootstrap_servers": ""}, "metrics_port": -5}
    options = {"metrics_port": "--metrics-port", "model_uri": "--model-uri"}
    with pytest.raises(ConfigError, match=r"^invalid --metrics-port: .*\(got -5\)"):
        load_settings(ServeSettings, None, [], extra, options)
    # the same bad value from --set (not from the option) names the setting
    with pytest.raises(ConfigError, match=r"^invalid setting metrics_port"):
        load_settings(ServeSettings, None, ["metrics_port=-5"], None, options)


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    load_settings(TrainSettings, root / "tabular.yaml")
    serve = load_settings(ServeSettings, root / "serve.yaml")
    assert serve.kafka.input_topic == "features"
    assert serve.kafka.sasl_password is None
    kpi = load_settings(ServeSettings, root / "kpi.yaml")
    assert (kpi.kafka.input_topic, kpi.kafka.state_topic) == ("kpi", "kpi-state")
    assert kpi.model_uri == "models:/streamvae-kpi@champion"


def test_secrets_are_not_shown(monkeypatch):
    monkeypatch.setenv("STREAMVAE_KAFKA__SASL_PASSWORD", "hunter2")
    s = load_settings(ServeSettings)
    assert "hunter2" not in repr(s)
    assert s.kafka.sasl_password.get_secret_value() == "hunter2"


@pytest.mark.parametrize(
    "override",
    [
        "kafka.sasl_password=[hunter2]",
        "kafka.sasl_password={hunter2: 1}",
        "kafka.ssl_password=[hunter2]",
    ],
)
def test_a_bad_secret_value_is_never_echoed(override):
    with pytest.raises(ConfigError) as err:
        load_settings(ServeSettings, None, [override])
    assert "hunter2" not in str(err.value)
    assert "kafka." in str(err.value) and "value hidden" in str(err.value)


@pytest.mark.parametrize("name", ["serve.yaml", "kpi.yaml", "images.yaml"])
def test_shipped_configs_bind_metrics_to_loopback(name):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    assert load_settings(ServeSettings, root / name).metrics_host == "127.0.0.1"


def test_processing_error_settings_are_checked():
    assert ServeSettings().on_processing_error == "dead_letter"
    with pytest.raises(ConfigError, match="on_processing_error"):
        load_settings(ServeSettings, None, ["on_processing_error=ignore"])
    with pytest.raises(ConfigError, match="max_output_bytes"):
        load_settings(ServeSettings, None, ["max_output_bytes=20000000"])
