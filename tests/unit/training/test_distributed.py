"""The data-parallel fits with 2 gloo processes: same weights and same stop on every rank.

In memory (:func:`fit`: every rank has the rows, trains its shard) and streamed
(:func:`fit_stream`: every rank streams its own rows, of another count than the other's).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from streamvae.models import VAE, VAEConfig
from streamvae.training import TrainConfig, fit, fit_stream, local_batch_size
from streamvae.training.distributed import all_gather, all_mean, shard, world
from streamvae.training.fit import _exactly
from tests.factories import make_normal

CONFIG = VAEConfig(input_dim=6, latent_dim=2, hidden_dims=(16,), learn_variance=True,
                   per_feature_variance=True)  # fmt: skip
TRAIN = TrainConfig(epochs=12, patience=3, seed=0, device="cpu", batch_size=64, min_steps=0)


def _rows() -> np.ndarray:
    x = make_normal(1200, 6, seed=0).astype(np.float32)
    return (x - x.mean(0)) / x.std(0)


def _rank(rank: int, size: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        assert world() == (rank, size)
        assert all_mean({"x": float(rank)}) == {"x": 0.5}
        model, result = fit(lambda: VAE(CONFIG), _rows(), TRAIN)
        flat = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
        np.savez(f"{out}-{rank}.npz", weights=flat, best=result.best_epoch,
                 run=result.epochs_run, val=result.best_metrics["val_loss"],
                 val_rows=result.val_rows)  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_shards_are_disjoint_and_equal_in_size():
    parts = [set(range(10)[shard(10, r, 3)]) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 3]
    assert not parts[0] & parts[1] and not parts[1] & parts[2]


@pytest.mark.timeout(300)
def test_two_ranks_end_with_the_same_weights_and_stop_together(tmp_path):
    out = str(tmp_path / "rank")
    mp.spawn(_rank, args=(2, f"file://{tmp_path / 'init'}", out), nprocs=2, join=True)
    a, b = np.load(f"{out}-0.npz"), np.load(f"{out}-1.npz")
    assert np.array_equal(a["weights"], b["weights"]), "DDP keeps the ranks' weights equal"
    assert int(a["best"]) == int(b["best"]) and int(a["run"]) == int(b["run"])
    assert float(a["val"]) == float(b["val"]), "the validation loss is averaged over ranks"
    assert np.array_equal(a["val_rows"], b["val_rows"])
    _, alone = fit(lambda: VAE(CONFIG), _rows(), TRAIN)
    assert abs(float(a["val"]) - alone.best_metrics["val_loss"]) < 0.05 * abs(
        alone.best_metrics["val_loss"]
    ), "two processes train as well as one"


def _stream_rank(rank: int, size: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        assert all_gather({"rank": rank}) == [{"rank": 0}, {"rank": 1}]
        rows = _rows()
        own = rows[:540] if rank == 0 else rows[540:1000]  # uneven shares: 540 and 460 rows
        batch = local_batch_size(TRAIN)
        assert batch == TRAIN.batch_size // 2
        counts: list[int] = []

        def batches(epoch: int):
            order = np.random.default_rng([epoch, rank]).permutation(own.shape[0])
            counts.append(epoch)
            return (own[order[i : i + batch]] for i in range(0, own.shape[0], batch))

        model, result = fit_stream(lambda: VAE(CONFIG), batches, own.shape[0], rows[1000:], TRAIN)
        flat = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
        np.savez(f"{out}-{rank}.npz", weights=flat, best=result.best_epoch,
                 run=result.epochs_run, val=result.best_metrics["val_loss"],
                 passes=len(counts))  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_exactly_gives_the_steps_asked_reading_the_stream_again_when_short():
    def stream():
        return iter([np.zeros((2, 1)), np.ones((2, 1))])

    assert [float(b[0, 0]) for b in _exactly(5, stream)] == [0, 1, 0, 1, 0]
    assert len(list(_exactly(1, stream))) == 1
    with pytest.raises(ValueError, match="no mini-batch"):
        list(_exactly(3, lambda: iter([])))


@pytest.mark.timeout(300)
def test_two_ranks_streaming_uneven_shares_end_with_the_same_weights(tmp_path):
    out = str(tmp_path / "stream")
    mp.spawn(_stream_rank, args=(2, f"file://{tmp_path / 'init'}", out), nprocs=2, join=True)
    a, b = np.load(f"{out}-0.npz"), np.load(f"{out}-1.npz")
    assert np.array_equal(a["weights"], b["weights"]), "DDP keeps the ranks' weights equal"
    assert int(a["best"]) == int(b["best"]) and int(a["run"]) == int(b["run"])
    assert float(a["val"]) == float(b["val"]), "the validation loss is averaged over ranks"
    # rank 1's 460 rows (15 steps) are read again to take the 17 steps of rank 0's 540
    assert int(b["passes"]) > int(a["passes"]) == int(a["run"])
    rows = _rows()
    _, alone = fit_stream(
        lambda: VAE(CONFIG),
        lambda epoch: (rows[i : i + 64] for i in range(0, 1000, 64)), 1000, rows[1000:], TRAIN,
    )  # fmt: skip
    assert abs(float(a["val"]) - alone.best_metrics["val_loss"]) < 0.05 * abs(
        alone.best_metrics["val_loss"]
    ), "two processes train as well as one"
