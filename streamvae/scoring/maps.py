"""Pixel-wise anomaly maps of a VAE (pixel-wise localisation with VAEs) and their evaluation.

For an image ``x`` (flat, ``(n, C*H*W)``, the model's input) with negative ELBO
``L = L_rec + L_KL``:

* ``rec_error``: squared error between ``x`` and the decoder mean of the encoder mean.
* ``elbo_grad``, ``kl_grad``, ``rec_grad``: ``|dL/dx|``, ``|dL_KL/dx|``, ``|dL_rec/dx|``.
* ``combi``: ``kl_grad * rec_error``.
* ``proj_rec_error``: move ``x`` towards the normal manifold by minimising
  ``E(x) = L_rec(x) + lam * ||x - x0||_1`` with Adam (learning rate 0.03, a bounded number of
  steps), then the squared error between ``x0`` and the projected image.

Maps are summed over channels: ``(n, H, W)``. Everything runs in batches with the model in
eval mode (``z = mu``), so a map is a deterministic function of its image. The gradient
predictors cost one backward pass per batch; the projection ``steps`` of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
import torch

from streamvae.models import BaseVAE
from streamvae.scoring.evaluation import roc_auc

MapKind = Literal["rec_error", "elbo_grad", "kl_grad", "rec_grad", "combi", "proj_rec_error"]
MAP_KINDS: tuple[MapKind, ...] = get_args(MapKind)
GRADIENT_KINDS: frozenset[str] = frozenset({"elbo_grad", "kl_grad", "rec_grad", "combi"})
F32 = npt.NDArray[np.float32]


def _terms(model: BaseVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample reconstruction NLL and KL, and the reconstruction, of ``x``."""
    out = model(x)
    terms = model.elbo_terms(x, out)
    return terms.recon_nll, terms.kl, out.recon


def _grad(loss: torch.Tensor, x: torch.Tensor, retain: bool) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss.sum(), x, retain_graph=retain)
    return grad.abs()


def project(
    model: BaseVAE, x0: torch.Tensor, *, steps: int = 50, lam: float = 1.0, lr: float = 0.03
) -> torch.Tensor:
    """``x0`` moved towards what the model reconstructs well (the Proj-Rec-Error restoration).

    Minimises ``L_rec(x) + lam * ||x - x0||_1`` per image with Adam; returns the projected
    images (detached), clamped to the input range [0, 1].
    """
    x = x0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        recon_nll, _, _ = _terms(model, x)
        energy = recon_nll + lam * (x - x0).abs().sum(dim=1)
        opt.zero_grad()
        energy.sum().backward()  # type: ignore[no-untyped-call]
        opt.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
    return x.detach()


def pixel_maps(
    model: BaseVAE,
    images: F32,
    shape: tuple[int, int, int],
    kinds: Sequence[MapKind] = ("rec_error",),
    *,
    batch_size: int = 64,
    proj_steps: int = 50,
    proj_lambda: float = 1.0,
    device: str | torch.device = "cpu",
) -> dict[MapKind, F32]:
    """The requested maps of flat ``images (n, C*H*W)`` shaped ``(C, H, W)``.

    Returns:
        ``kind -> (n, H, W)`` float32 maps (channels summed).

    Raises:
        ValueError: an unknown kind, or images of the wrong width.
    """
    unknown = sorted(set(kinds) - set(MAP_KINDS))
    if unknown:
        msg = f"unknown map kind(s) {unknown}; known: {list(MAP_KINDS)}"
        raise ValueError(msg)
    c, h, w = shape
    if images.ndim != 2 or images.shape[1] != c * h * w:
        msg = f"expected images of shape (n, {c * h * w}), got {images.shape}"
        raise ValueError(msg)
    model.eval()
    out: dict[MapKind, list[F32]] = {kind: [] for kind in kinds}
    for start in range(0, len(images), batch_size):
        batch = torch.as_tensor(images[start : start + batch_size], device=device)
        for kind, value in _batch_maps(model, batch, kinds, proj_steps, proj_lambda).items():
            out[kind].append(value.view(-1, c, h, w).sum(dim=1).cpu().numpy().astype(np.float32))
    return {kind: np.concatenate(parts) if parts else np.zeros((0, h, w), np.float32)
            for kind, parts in out.items()}  # fmt: skip


def _batch_maps(
    model: BaseVAE,
    x0: torch.Tensor,
    kinds: Sequence[MapKind],
    proj_steps: int,
    proj_lambda: float,
) -> dict[MapKind, torch.Tensor]:
    wanted = set(kinds)
    maps: dict[MapKind, torch.Tensor] = {}
    need_rec = wanted & {"rec_error", "combi"}
    if wanted & GRADIENT_KINDS:
        with torch.enable_grad():
            x = x0.detach().clone().requires_grad_(True)
            recon_nll, kl, recon = _terms(model, x)
            grads = {
                "rec_grad": (recon_nll, wanted & {"rec_grad"}),
                "kl_grad": (kl, wanted & {"kl_grad", "combi"}),
                "elbo_grad": (recon_nll + kl, wanted & {"elbo_grad"}),
            }
            todo = [(name, loss) for name, (loss, used) in grads.items() if used]
            for i, (name, loss) in enumerate(todo):
                maps[name] = _grad(loss, x, retain=i < len(todo) - 1)  # type: ignore[index]
            if need_rec:
                maps["rec_error"] = (x0 - recon.detach()) ** 2
    elif need_rec:
        with torch.inference_mode():
            maps["rec_error"] = (x0 - model(x0).recon) ** 2
    if "combi" in wanted:
        maps["combi"] = maps["kl_grad"] * maps["rec_error"]
    if "proj_rec_error" in wanted:
        with torch.enable_grad():
            projected = project(model, x0, steps=proj_steps, lam=proj_lambda)
        maps["proj_rec_error"] = (x0 - projected) ** 2
    return {kind: maps[kind] for kind in kinds}


def pixel_auroc(maps: F32, masks: npt.NDArray[np.bool_]) -> float:
    """AUROC of every pixel's map value against the ground-truth anomaly mask."""
    return float(roc_auc(masks.ravel().astype(np.float64), maps.ravel().astype(np.float64)))


class MapEnsemble:
    """Logistic regression on the predictors of a pixel, fitted on a small labelled subset.

    Features are the predictors' values, log-scaled (``log1p``) and standardised; the fit
    maximises the class-balanced likelihood with L2 regularisation (L-BFGS, torch).
    """

    def __init__(self, kinds: Sequence[MapKind], l2: float = 1e-3) -> None:
        self.kinds = tuple(kinds)
        self.l2 = l2
        self.mean = np.zeros(len(self.kinds))
        self.std = np.ones(len(self.kinds))
        self.weights = np.zeros(len(self.kinds) + 1)

    def _features(self, maps: dict[MapKind, F32]) -> npt.NDArray[np.float64]:
        columns = [
            np.log1p(np.maximum(maps[k].ravel().astype(np.float64), 0.0)) for k in self.kinds
        ]
        return np.stack(columns, axis=1)

    def fit(self, maps: dict[MapKind, F32], masks: npt.NDArray[np.bool_]) -> MapEnsemble:
        """Fit on the maps of labelled images and their masks (both ``(n, H, W)``)."""
        features = self._features(maps)
        labels = masks.ravel().astype(np.float64)
        if labels.min() == labels.max():
            msg = "the labelled subset needs both anomalous and normal pixels"
            raise ValueError(msg)
        self.mean, self.std = features.mean(axis=0), features.std(axis=0) + 1e-12
        x = torch.as_tensor((features - self.mean) / self.std)
        y = torch.as_tensor(labels)
        pos = float(y.mean())
        sample_weight = torch.where(y > 0, 0.5 / pos, 0.5 / (1 - pos))
        params = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([params], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            logits = x @ params[:-1] + params[-1]
            loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, y, weight=sample_weight
                )
                + self.l2 * (params[:-1] ** 2).sum()
            )
            loss.backward()  # type: ignore[no-untyped-call]
            return loss

        opt.step(closure)  # type: ignore[no-untyped-call]
        self.weights = params.detach().numpy().copy()
        return self

    def predict(self, maps: dict[MapKind, F32]) -> F32:
        """The ensemble's pixel map (logit scale), shaped like the inputs."""
        shape = maps[self.kinds[0]].shape
        features = (self._features(maps) - self.mean) / self.std
        logits = features @ self.weights[:-1] + self.weights[-1]
        return np.asarray(logits.reshape(shape), dtype=np.float32)
