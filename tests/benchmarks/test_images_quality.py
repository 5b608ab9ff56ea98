"""The shipped image default vs KNN on real MNIST digits (development half), per digit.

Protocol and baseline in :mod:`tests.image_quality`: for every digit as the normal class and
seeds 0-2, train on 60 % of the digit, test on the rest plus as many other digits. Prints,
per digit, the default's AUROC and AP, the AUROC of its parts alone (negative ELBO, pixel
distance to the nearest training image), KNN's AUROC and AP, training seconds and epochs,
and the false-positive rate on the test normals at the calibrated 95th percentile; then the
ablation (every part and combination, from the same trained models); writes
``images_quality.json``. ``MNIST_DIGITS=0,2`` runs a subset.
"""

from __future__ import annotations

import os
from dataclasses import asdict

import numpy as np
import pytest
import torch

from tests.benchmarks.harness import write_json
from tests.image_quality import digit_run, load_digits

KEYS = (
    "auroc", "ap", "auroc_neg_elbo", "auroc_neighbour", "auroc_corrected",
    "auroc_elbo_neighbour", "auroc_sum_of_three", "knn_auroc", "knn_ap", "train_s", "epochs",
    "test_fpr",
)  # fmt: skip
ABLATION = {
    "auroc_neg_elbo": "negative ELBO alone",
    "auroc_neighbour": "pixel distance to the nearest training image alone",
    "auroc_corrected": "complexity-corrected likelihood alone",
    "auroc_elbo_neighbour": "ELBO + neighbour surprises",
    "auroc_sum_of_three": "ELBO + neighbour + corrected surprises",
    "auroc": "neighbour + max(ELBO, corrected): the default",
}


@pytest.mark.benchmark
@pytest.mark.timeout(5400)
def test_image_default_vs_knn_on_mnist(mnist_dev):
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    images, labels = load_digits(mnist_dev)
    digits = [int(d) for d in os.environ.get("MNIST_DIGITS", "0,1,2,3,4,5,6,7,8,9").split(",")]
    runs = [asdict(digit_run(images, labels, d, seed)) for d in digits for seed in range(3)]
    means = {
        d: {k: float(np.mean([r[k] for r in runs if r["digit"] == d])) for k in KEYS}
        for d in digits
    }
    print(
        f"\n{'digit':<6} {'AUROC':>6} {'AP':>6} {'ELBO':>6} {'1-NN':>6} {'KNN':>6} "
        f"{'KNN AP':>6} {'train s':>8} {'epochs':>6} {'FPR@95':>7}"
    )
    for d, m in means.items():
        mark = "" if m["auroc"] > m["knn_auroc"] else "  <= KNN"
        print(
            f"{d:<6} {m['auroc']:>6.3f} {m['ap']:>6.3f} {m['auroc_neg_elbo']:>6.3f} "
            f"{m['auroc_neighbour']:>6.3f} {m['knn_auroc']:>6.3f} {m['knn_ap']:>6.3f} "
            f"{m['train_s']:>8.1f} {m['epochs']:>6.0f} {m['test_fpr']:>7.3f}{mark}"
        )
    overall = {k: float(np.mean([m[k] for m in means.values()])) for k in KEYS}
    wins = sum(m["auroc"] > m["knn_auroc"] for m in means.values())
    print(
        f"{'mean':<6} {overall['auroc']:>6.3f} {overall['ap']:>6.3f} "
        f"{overall['auroc_neg_elbo']:>6.3f} {overall['auroc_neighbour']:>6.3f} "
        f"{overall['knn_auroc']:>6.3f} {overall['knn_ap']:>6.3f} {overall['train_s']:>8.1f} "
        f"{overall['epochs']:>6.0f} {overall['test_fpr']:>7.3f}"
    )
    print(f"above KNN on {wins} of {len(means)} digits")
    print("\nablation (mean AUROC over the digits, the same trained models):")
    for key, label in ABLATION.items():
        print(f"  {label:<52} {overall[key]:.3f}")
    write_json(
        "images_quality.json",
        {"runs": runs, "means": {str(d): m for d, m in means.items()}, "overall": overall,
         "wins_vs_knn": wins},
    )  # fmt: skip
    assert all(np.isfinite([m["auroc"] for m in means.values()]))
