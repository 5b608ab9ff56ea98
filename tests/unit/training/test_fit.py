from __future__ import annotations

import pytest
import torch

from streamvae.models import VAE, VAEConfig
from streamvae.training import TrainConfig, epoch_budget, fit, resolve_device
from tests.factories import make_normal


def _build():
    return VAE(VAEConfig(input_dim=6, latent_dim=2, hidden_dims=(16,)))


def test_same_seed_same_weights_different_seed_different_weights():
    x = make_normal(200)
    cfg = TrainConfig(epochs=3, seed=7, device="cpu")
    a, _ = fit(_build, x, cfg)
    b, _ = fit(_build, x, cfg)
    c, _ = fit(_build, x, TrainConfig(epochs=3, seed=8, device="cpu"))
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_fit_does_not_disturb_the_callers_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(_build, make_normal(100), TrainConfig(epochs=1, device="cpu"))
    assert torch.equal(torch.rand(3), expected)


def test_loss_goes_down_and_best_weights_are_kept():
    model, result = fit(_build, make_normal(400), TrainConfig(epochs=30, patience=0, device="cpu"))
    history = [h["val_loss"] for h in result.history]
    assert history[-1] < history[0]
    assert result.best_metrics["val_loss"] == min(history)
    assert not model.training


class _Recorder:
    def __init__(self):
        self.events = []

    def on_train_start(self, max_epochs):
        self.events.append(("start", max_epochs))

    def on_epoch_end(self, epoch, metrics):
        self.events.append(("epoch", epoch, sorted(metrics)))

    def on_train_end(self, best_epoch, stopped_early):
        self.events.append(("end", best_epoch, stopped_early))


def test_early_stopping_and_callbacks():
    recorder = _Recorder()
    # min_delta this large means no epoch after the first counts as an improvement
    cfg = TrainConfig(epochs=50, patience=3, min_delta=1e6, device="cpu")
    _, result = fit(_build, make_normal(200), cfg, [recorder])
    assert result.stopped_early
    assert result.epochs_run == 4
    assert result.best_epoch == 0
    assert recorder.events[0] == ("start", 50)
    assert recorder.events[1][2] == [
        "beta",
        "train_kl",
        "train_loss",
        "train_recon_nll",
        "val_kl",
        "val_loss",
        "val_recon_nll",
    ]
    assert recorder.events[-1] == ("end", 0, True)


def test_patience_zero_never_stops_early():
    cfg = TrainConfig(epochs=5, patience=0, min_delta=1e6, device="cpu")
    _, result = fit(_build, make_normal(100), cfg)
    assert result.epochs_run == 5 and not result.stopped_early


def test_bad_data_and_settings():
    with pytest.raises(ValueError, match="finite"):
        fit(_build, make_normal(1), TrainConfig(device="cpu"))
    bad = make_normal(50)
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        fit(_build, bad, TrainConfig(device="cpu"))
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.parametrize(
    ("n_train", "expected"),
    [
        (64, (400, 40)),  # 1 step an epoch: 400 steps, patience 40 steps
        (1280, (100, 10)),  # 10 steps an epoch: the configured figures already reach them
        (640, (100, 10)),
        (10, (400, 40)),
    ],
)
def test_epoch_budget_gives_small_data_sets_enough_steps(n_train, expected):
    cfg = TrainConfig(epochs=100, patience=10, batch_size=128, min_steps=400, patience_steps=40)
    assert epoch_budget(cfg, n_train) == expected
    capped = TrainConfig(epochs=100, patience=10, min_steps=10**6, max_epochs=300)
    assert epoch_budget(capped, n_train)[0] == 300
    assert epoch_budget(TrainConfig(epochs=7, patience=0, min_steps=400), n_train)[1] == 0


def test_fit_runs_the_raised_epoch_limit_and_reports_its_validation_rows():
    recorder = _Recorder()
    x = make_normal(100)  # 80 training rows = 1 step an epoch at batch 128
    cfg = TrainConfig(epochs=2, patience=3, min_steps=12, patience_steps=5, min_delta=1e6,
                      device="cpu")  # fmt: skip
    _, result = fit(_build, x, cfg, [recorder])
    assert recorder.events[0] == ("start", 12)
    assert result.epochs_run == 6  # patience raised from 3 to 5 epochs: stops at 1 + 5
    assert result.val_rows.shape == (20,) and len(set(result.val_rows.tolist())) == 20
    assert result.val_rows.min() >= 0 and result.val_rows.max() < 100
    cfg = TrainConfig(epochs=5, patience=0, val_fraction=0.0, device="cpu")
    assert fit(_build, x, cfg)[1].val_rows.size == 0
