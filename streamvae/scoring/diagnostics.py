"""Diagnostics of a trained VAE (reconstruction-detection trade-off, learnable variance).

* per-latent-dimension KL (a proxy for the information each dimension carries) and the
  number of active dimensions;
* the distance between the latent distributions of two sets of records (a Gaussian fitted
  to each set's posterior means; Fréchet / 2-Wasserstein distance in closed form);
* the MMD between the aggregated posterior and the prior N(0, I);
* the reconstruction MSE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.linalg
import torch

from streamvae.models import BaseVAE

F64 = npt.NDArray[np.float64]
ACTIVE_KL_NATS = 0.01
"""A latent dimension is active when its mean KL exceeds this (Burda et al.'s 0.01)."""


@dataclass(frozen=True, slots=True)
class LatentStats:
    """Posterior means and samples of a set of records, and the fit they give.

    Attributes:
        means: ``(n, k)`` posterior means ``E[z | x]`` (pruned dimensions zeroed).
        samples: ``(n, k)`` one draw ``z ~ q(z | x)`` per record (the aggregated posterior).
        kl_per_dim: ``(k,)`` mean KL per latent dimension.
        recon_mse: mean squared reconstruction error per feature (scaled units).
    """

    means: F64
    samples: F64
    kl_per_dim: F64
    recon_mse: float


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """What :func:`diagnose` reports.

    Attributes:
        kl_per_dim: ``(k,)`` mean KL per latent dimension, in model order.
        active_dims: dimensions with KL above ``ACTIVE_KL_NATS`` (and not pruned).
        pruned_dims: indices the model itself switched off (Sparse VAE), else empty.
        mmd_prior: MMD^2 between the aggregated posterior and N(0, I).
        recon_mse: reconstruction MSE per feature (scaled units).
        latent_distance: Fréchet distance between the latent Gaussians of normal and
            abnormal records, when labels were given.
    """

    kl_per_dim: F64
    active_dims: int
    pruned_dims: tuple[int, ...]
    mmd_prior: float
    recon_mse: float
    latent_distance: float | None = None

    def metrics(self, prefix: str = "diag_") -> dict[str, float]:
        """Flat metrics for MLflow."""
        out = {
            f"{prefix}active_dims": float(self.active_dims),
            f"{prefix}pruned_dims": float(len(self.pruned_dims)),
            f"{prefix}mmd_prior": self.mmd_prior,
            f"{prefix}recon_mse": self.recon_mse,
        }
        out |= {f"{prefix}kl_dim_{i:03d}": float(v) for i, v in enumerate(self.kl_per_dim)}
        if self.latent_distance is not None:
            out[f"{prefix}latent_distance"] = self.latent_distance
        return out


def latent_stats(
    model: BaseVAE,
    x: torch.Tensor,
    cond: torch.Tensor | None = None,
    *,
    seed: int = 0,
    chunk_size: int = 8192,
) -> LatentStats:
    """Encode ``x`` (scaled) in eval mode and collect what the diagnostics need."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    means, samples, kls, sq = [], [], [], []
    with torch.inference_mode():
        mask = model.active_mask().to(x.dtype)
        for start in range(0, x.shape[0], chunk_size):
            xb = x[start : start + chunk_size]
            cb = None if cond is None else cond[start : start + chunk_size]
            out = model(xb, cb)
            eps = torch.randn(out.mu.shape, generator=generator).to(out.mu.device)
            means.append(out.z)
            samples.append((out.mu + eps * torch.exp(0.5 * out.logvar)) * mask)
            kls.append(model.kl_per_dim(out) * mask)
            sq.append((xb - out.recon).pow(2))
    model.train(was_training)

    def cat(parts: list[torch.Tensor]) -> F64:
        return torch.cat(parts).double().cpu().numpy()

    return LatentStats(cat(means), cat(samples), cat(kls).mean(axis=0), float(cat(sq).mean()))


def fit_gaussian(points: F64, ridge: float = 1e-6) -> tuple[F64, F64]:
    """Mean and covariance of ``points (n, k)`` (a small ridge keeps it positive definite).

    Raises:
        ValueError: fewer than 2 points.
    """
    if points.ndim != 2 or points.shape[0] < 2:
        msg = f"need at least 2 points to fit a Gaussian, got shape {points.shape}"
        raise ValueError(msg)
    cov = np.atleast_2d(np.cov(points, rowvar=False)) + ridge * np.eye(points.shape[1])
    return points.mean(axis=0), cov


def frechet_distance(a: F64, b: F64) -> float:
    """Squared 2-Wasserstein (Fréchet) distance between Gaussians fitted to ``a`` and ``b``.

    ``||m_a - m_b||^2 + Tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)``.

    >>> rng = np.random.default_rng(0)
    >>> same = frechet_distance(rng.normal(size=(4000, 2)), rng.normal(size=(4000, 2)))
    >>> moved = frechet_distance(rng.normal(size=(4000, 2)), rng.normal(size=(4000, 2)) + 3)
    >>> bool(same < 0.01), round(moved)
    (True, 18)
    """
    m_a, c_a = fit_gaussian(a)
    m_b, c_b = fit_gaussian(b)
    root_a = scipy.linalg.sqrtm(c_a)
    cross = scipy.linalg.sqrtm(root_a @ c_b @ root_a)
    trace = np.trace(c_a + c_b - 2.0 * np.real(cross))
    return float(np.sum((m_a - m_b) ** 2) + max(trace, 0.0))


def mmd_to_standard_normal(samples: F64, *, seed: int = 0, max_points: int = 2000) -> float:
    """Unbiased MMD^2 between ``samples (n, k)`` and as many N(0, I) draws.

    Inverse multiquadratic kernels ``C / (C + ||a - b||^2)`` with ``C = 2 k s`` summed over
    scales ``s`` in 0.1 .. 10 (the Wasserstein auto-encoder's choice): heavy tails, so the
    statistic sees both close and distant mismatches. Rows beyond ``max_points`` are
    subsampled (seeded).

    >>> rng = np.random.default_rng(1)
    >>> near = mmd_to_standard_normal(rng.normal(size=(500, 3)))
    >>> far = mmd_to_standard_normal(rng.normal(size=(500, 3)) * 3)
    >>> bool(abs(near) < 0.05 < far)
    True
    """
    rng = np.random.default_rng(seed)
    if samples.shape[0] > max_points:
        samples = samples[rng.choice(samples.shape[0], max_points, replace=False)]
    n, k = samples.shape
    if n < 2:
        msg = "need at least 2 samples for the MMD"
        raise ValueError(msg)
    prior = rng.standard_normal((n, k))

    def sq_dist(a: F64, b: F64) -> F64:
        cross: F64 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return np.maximum(cross, 0.0)

    d_qq, d_pp, d_qp = sq_dist(samples, samples), sq_dist(prior, prior), sq_dist(samples, prior)
    total = 0.0
    off_diagonal = ~np.eye(n, dtype=bool)
    for scale in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
        c = 2.0 * k * scale
        k_qq, k_pp, k_qp = c / (c + d_qq), c / (c + d_pp), c / (c + d_qp)
        total += (k_qq[off_diagonal].sum() + k_pp[off_diagonal].sum()) / (n * (n - 1))
        total -= 2.0 * k_qp.mean()
    return float(total)


def diagnose(
    model: BaseVAE,
    x: torch.Tensor,
    cond: torch.Tensor | None = None,
    labels: npt.NDArray[np.integer] | None = None,
    *,
    seed: int = 0,
) -> Diagnostics:
    """Diagnostics of ``model`` on scaled rows ``x``.

    Args:
        model: a trained model.
        x: ``(n, d)`` scaled rows; with ``labels``, normal (0) and abnormal (1) ones.
        cond: their condition, for conditional families.
        labels: ``(n,)`` 0/1 labels: adds the normal-vs-abnormal latent distance; the other
            figures then use the normal rows only.
        seed: seeds the posterior samples and the prior draws of the MMD.
    """
    stats = latent_stats(model, x, cond, seed=seed)
    distance = None
    normal = np.ones(x.shape[0], dtype=bool) if labels is None else np.asarray(labels) == 0
    if labels is not None and normal.sum() >= 2 and (~normal).sum() >= 2:
        distance = frechet_distance(stats.means[normal], stats.means[~normal])
    pruned = tuple(int(i) for i in np.flatnonzero(~model.active_mask().cpu().numpy()))
    if labels is not None:
        normal_stats = latent_stats(
            model,
            x[torch.from_numpy(normal)],
            None if cond is None else cond[torch.from_numpy(normal)],
            seed=seed,
        )
    else:
        normal_stats = stats
    kl = normal_stats.kl_per_dim
    return Diagnostics(
        kl_per_dim=kl,
        active_dims=int((kl > ACTIVE_KL_NATS).sum()),
        pruned_dims=pruned,
        mmd_prior=mmd_to_standard_normal(normal_stats.samples, seed=seed),
        recon_mse=normal_stats.recon_mse,
        latent_distance=distance,
    )
