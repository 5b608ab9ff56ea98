"""Training epoch time and samples/s on a GPU (bfloat16 autocast, large batches) vs the CPU.

Runs only where CUDA is available (`pytest -m "benchmark and gpu" tests/benchmarks`).
"""

from __future__ import annotations

import time

import pytest
import torch

from streamvae.data import StandardScaler, load_table, novelty_split
from streamvae.models import VAE, VAEConfig
from streamvae.training import TrainConfig, fit
from tests.benchmarks.harness import write_json

pytestmark = [pytest.mark.benchmark, pytest.mark.gpu]


def _epoch_time(x, device: str, batch_size: int, epochs: int = 5) -> float:
    config = VAEConfig(input_dim=x.shape[1], latent_dim=8, hidden_dims=(256, 128))
    started = time.perf_counter()
    fit(
        lambda: VAE(config),
        x,
        TrainConfig(epochs=epochs, patience=0, batch_size=batch_size, device=device),
    )
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / epochs


def test_gpu_vs_cpu_epoch_time(adbench_dir):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    table = load_table(adbench_dir / "32_shuttle.npz")
    split = novelty_split(table.labels, seed=0)
    x = StandardScaler.fit(table.features[split.train]).transform(table.features[split.train])
    rows = []
    for device, batch in (("cpu", 128), ("cuda", 128), ("cuda", 4096)):
        seconds = _epoch_time(x, device, batch)
        rows.append({"device": device, "batch": batch, "s_per_epoch": seconds,
                     "samples_per_s": x.shape[0] * 0.8 / seconds})  # fmt: skip
    print(
        f"\n{'device':<6} {'batch':>6} {'s/epoch':>8} {'samples/s':>10}  ({torch.cuda.get_device_name()})"
    )
    for r in rows:
        print(
            f"{r['device']:<6} {r['batch']:>6} {r['s_per_epoch']:>8.3f} {r['samples_per_s']:>10,.0f}"
        )
    write_json("gpu_training.json", rows)
