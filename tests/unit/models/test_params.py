"""Family-specific hyper-parameters: what each family takes, and what a setting may not set."""

from __future__ import annotations

import pytest

from streamvae.config import TrainSettings, load_settings
from streamvae.models import DERIVED_FIELDS, MODEL_REGISTRY, config_from_dict, with_params
from streamvae.workflows.kpi import KpiSettings, model_values
from streamvae.workflows.train import _model_values


def test_every_family_lists_its_params_and_none_the_data_fixes():
    for key, spec in MODEL_REGISTRY.items():
        assert spec.params, key
        assert not set(spec.params) & DERIVED_FIELDS
    assert "kernel_size" in MODEL_REGISTRY["conv1d_vae"].params
    assert "kernel_size" not in MODEL_REGISTRY["vae"].params
    assert "head" in MODEL_REGISTRY["conv2d_vae"].params


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"input_dim": 3}, "fixed by the data"),
        ({"latent_dim": 3}, "have settings of their own"),
        ({"head": "stem"}, "takes no param ['head']"),
    ],
)
def test_with_params_refuses_what_it_cannot_set(params, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        with_params("conv1d_vae", {"input_dim": 16, "latent_dim": 4}, params)


def test_a_kpi_param_reaches_the_family_config():
    settings = KpiSettings(model="conv1d_vae", window_len=16, params={"kernel_size": 3})
    config = config_from_dict("conv1d_vae", model_values(settings, conditional=False))
    assert config.kernel_size == 3 and config.input_dim == 16
    with pytest.raises(ValueError, match="kernel_size must be an odd number"):
        KpiSettings(model="conv1d_vae", params={"kernel_size": 4})
    with pytest.raises(ValueError, match="takes no param"):
        KpiSettings(model="vae", params={"kernel_size": 3})


def test_a_tabular_param_from_yaml_reaches_the_family_config():
    settings = load_settings(TrainSettings, None, ["model.params={init_log_gamma: -1.5}"])
    values = _model_values(settings, 6, None)
    assert config_from_dict("vae", values).init_log_gamma == -1.5
    wrong = load_settings(TrainSettings, None, ["model.params={kernel_size: 3}"])
    with pytest.raises(ValueError, match="model 'vae' takes no param"):
        _model_values(wrong, 6, None)
