from __future__ import annotations

import pytest
import torch

from streamvae.models import VAE, VAEConfig, config_from_dict, model_spec


def test_eval_mode_is_deterministic_and_train_mode_samples():
    torch.manual_seed(0)
    model = VAE(VAEConfig(input_dim=5, latent_dim=3))
    x = torch.randn(8, 5)
    model.eval()
    a, b = model(x), model(x)
    assert torch.equal(a.recon, b.recon)
    assert torch.equal(a.z, a.mu)
    model.train()
    assert not torch.equal(model(x).z, model(x).z)


def test_elbo_terms_shapes_and_non_zero_components():
    model = VAE(VAEConfig(input_dim=5, latent_dim=3)).eval()
    x = torch.randn(8, 5)
    terms = model.elbo_terms(x, model(x))
    assert terms.recon_nll.shape == (8,)
    assert terms.kl.shape == (8,)
    assert terms.per_feature_nll.shape == (8, 5)
    assert torch.allclose(terms.per_feature_nll.sum(1), terms.recon_nll)
    assert (terms.kl > 0).all(), "the KL term must not be switched off"
    assert (terms.recon_nll > 0).all()


@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_loss_weights_kl_by_beta(beta):
    model = VAE(VAEConfig(input_dim=4, beta=beta)).eval()
    x = torch.randn(16, 4)
    terms = model.loss(x, model(x))
    assert torch.allclose(terms.loss, terms.recon_nll + beta * terms.kl)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input_dim", 0),
        ("latent_dim", 0),
        ("hidden_dims", (8, 0)),
        ("beta", -1.0),
        ("activation", "nope"),
    ],
)
def test_config_rejects_bad_values_naming_them(field, value):
    with pytest.raises(ValueError, match=field):
        VAEConfig(**{"input_dim": 4, field: value})


def test_registry_lookup_and_config_from_plain_values():
    assert model_spec("vae").model_cls is VAE
    config = config_from_dict("vae", {"input_dim": 3, "hidden_dims": [8, 4]})
    assert config.hidden_dims == (8, 4)
    with pytest.raises(KeyError, match="registered models"):
        model_spec("nope")
    with pytest.raises(ValueError, match="unknown vae config"):
        config_from_dict("vae", {"input_dim": 3, "depth": 2})


def test_no_hidden_layers_is_a_linear_vae():
    model = VAE(VAEConfig(input_dim=3, hidden_dims=())).eval()
    assert model(torch.zeros(2, 3)).recon.shape == (2, 3)
