"""Writes the research notebooks (run once; the .ipynb files are what is committed).

    python notebooks/make_notebooks.py           # write the notebooks (no outputs)
    python notebooks/make_notebooks.py --execute # and execute them in full mode (~30 min, 2 cores)
    python notebooks/make_notebooks.py --execute b c  # only those

The experiments themselves live in ``streamvae.bench.experiments``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = """\
import math
import numpy as np
import polars as pl
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from scipy.stats import spearmanr
from streamvae.training import BetaSchedule
from streamvae.bench import experiments as ex

FAST = ex.fast_mode()  # STREAMVAE_FAST=1: the CI smoke run
pl.Config.set_tbl_rows(60); pl.Config.set_tbl_cols(20)
print("fast mode" if FAST else "full run")"""

TRADEOFF = [
    new_markdown_cell("""\
# (a) The reconstruction–detection trade-off

**Paper's claim.** With a Gaussian VAE, a stronger latent constraint (larger beta, smaller
latent size d) gives better anomaly detection but worse reconstruction of normal data, so
picking hyper-parameters by the lowest normal reconstruction error picks a worse detector.
Seed variability (30 seeds of d = 64, beta = 10) is explained by the distance between the
latent distributions of normal and abnormal test samples. Cyclical beta scheduling and the
Sparse VAE are proposed as mitigations (better detection at a given reconstruction quality).

**Our data.** ADBench *cardio* (shipped with streamvae: 1,831 rows, 21 features, 176
anomalies), the novelty protocol (train on 60 % of the normal rows, test on the rest plus
all anomalies). beta in {0.1, 1, 10, 100}; latent sizes {2, 8, 20}, the closest to the
paper's {20, 64, 256} that fit 21 input features. Detection = AUROC of the negative ELBO
(streamvae's default score) and of the reconstruction error (the paper's); reconstruction =
MSE per feature on the normal test rows (standardised units)."""),
    new_code_cell(SETUP),
    new_code_cell("""\
split = ex.cardio_split(seed=0)
EPOCHS = 3 if FAST else 200
BETAS = (0.1, 1.0, 10.0) if FAST else (0.1, 1.0, 10.0, 100.0)
DIMS = (2, 8) if FAST else (2, 8, 20)
grid = [ex.run(split, "vae", latent_dim=d, beta=b, hidden_dims=(64, 32), epochs=EPOCHS)
        for b in BETAS for d in DIMS]
table = pl.DataFrame([r.row() for r in grid]).select(
    "beta", "latent_dim", "normal_recon_mse", "auroc_neg_elbo", "auroc_recon_error",
    "active_dims", "latent_distance")
table"""),
    new_code_cell("""\
mse = table["normal_recon_mse"].to_numpy()
rho_elbo = spearmanr(mse, table["auroc_neg_elbo"].to_numpy()).statistic
rho_rec = spearmanr(mse, table["auroc_recon_error"].to_numpy()).statistic
best_rec = table.sort("normal_recon_mse").row(0, named=True)
best_det = table.sort("auroc_neg_elbo", descending=True).row(0, named=True)
print(f"Spearman(normal recon MSE, AUROC neg_elbo)    = {rho_elbo:+.2f}")
print(f"Spearman(normal recon MSE, AUROC recon_error) = {rho_rec:+.2f}")
print(f"lowest reconstruction error: beta={best_rec['beta']}, d={best_rec['latent_dim']}, "
      f"AUROC {best_rec['auroc_neg_elbo']:.3f}")
print(f"best detector:               beta={best_det['beta']}, d={best_det['latent_dim']}, "
      f"AUROC {best_det['auroc_neg_elbo']:.3f}")
print("claim reproduced (worse reconstruction goes with better detection):",
      bool(rho_elbo > 0 and best_rec['auroc_neg_elbo'] < best_det['auroc_neg_elbo']))"""),
    new_markdown_cell("## Cyclical beta and the Sparse VAE against that frontier"),
    new_code_cell("""\
extra = [
    ex.run(split, "vae", latent_dim=8, beta=10.0, hidden_dims=(64, 32), epochs=EPOCHS,
           schedule=BetaSchedule(kind="cyclical", cycles=4, ratio=0.5)),
    ex.run(split, "vae", latent_dim=20, beta=10.0, hidden_dims=(64, 32), epochs=EPOCHS,
           schedule=BetaSchedule(kind="cyclical", cycles=4, ratio=0.5)),
    ex.run(split, "sparse_vae", latent_dim=20, beta=1.0, hidden_dims=(64, 32), epochs=EPOCHS),
    ex.run(split, "sparse_vae", latent_dim=8, beta=1.0, hidden_dims=(64, 32), epochs=EPOCHS),
]
mitigations = pl.DataFrame([r.row() for r in extra]).select(
    "family", "schedule", "beta", "latent_dim", "normal_recon_mse", "auroc_neg_elbo",
    "auroc_recon_error", "active_dims", "pruned_dims")
mitigations"""),
    new_code_cell("""\
fig, ax = plt.subplots(figsize=(6, 4))
for row in table.iter_rows(named=True):
    ax.scatter(row["normal_recon_mse"], row["auroc_neg_elbo"], c="tab:blue")
    ax.annotate(f"b={row['beta']:g},d={row['latent_dim']}", (row["normal_recon_mse"], row["auroc_neg_elbo"]), fontsize=7)
for row in mitigations.iter_rows(named=True):
    ax.scatter(row["normal_recon_mse"], row["auroc_neg_elbo"], c="tab:red", marker="*", s=80)
    ax.annotate(f"{row['family']} {row['schedule'] or ''} d={row['latent_dim']}", (row["normal_recon_mse"], row["auroc_neg_elbo"]), fontsize=7, color="tab:red")
ax.set_xlabel("normal reconstruction MSE (lower = better reconstruction)")
ax.set_ylabel("AUROC (negative ELBO)")
ax.set_title("cardio: reconstruction vs detection")
plt.show()"""),
    new_markdown_cell("""\
## Seed variability against the normal/abnormal latent distance

The paper's setting (beta = 10) collapses the posterior on cardio (0 active dimensions, see
the grid above), which makes every seed the same degenerate detector. The seeds therefore run
at d = 8, beta = 1, below the collapse, where the latent code carries information."""),
    new_code_cell("""\
SEEDS = range(2 if FAST else 10)
seeds = [ex.run(split, "vae", latent_dim=8, beta=1.0, hidden_dims=(64, 32), epochs=EPOCHS, seed=s)
         for s in SEEDS]
by_seed = pl.DataFrame([r.row() for r in seeds]).select(
    "seed", "auroc_neg_elbo", "auroc_recon_error", "latent_distance", "normal_recon_mse")
rho = spearmanr(by_seed["latent_distance"].to_numpy(), by_seed["auroc_neg_elbo"].to_numpy()).statistic
print(by_seed)
print(f"AUROC over seeds: mean {by_seed['auroc_neg_elbo'].mean():.3f}, "
      f"std {by_seed['auroc_neg_elbo'].std():.3f}")
print(f"Spearman(latent distance, AUROC) over {len(by_seed)} seeds = {rho:+.2f}")"""),
    new_markdown_cell("""\
## What the paper reported, what we measured

See the printed verdicts above (computed, not typed). The full-run figures are also in the
closing note of the research-models issue. On cardio the trade-off reproduces only in part:
see the discussion in `notebooks/README.md`."""),
]

GAMMA = [
    new_markdown_cell("""\
# (b) Fixed vs learnable decoder variance

**Paper's claim.** A decoder N(mu_x(z), gamma I) with a *trained* scalar gamma tightens the
model around the data manifold, so out-of-distribution inputs get a high negative
log-likelihood; with too little capacity outliers can even get a lower NLL than inliers.
Reported: trained on FashionMNIST, test BPD 2.4 vs MNIST 4.6–9.6. Fixing gamma at its
learned final value from the start trained worse (MMD 291.8 vs 93.3 on CelebA).

**Our data.** scikit-learn *digits* (8x8): inliers = digits 0–4 (train on 60 % of them),
outliers = digits 5–9. Score = importance-sampled NLL (K = 64) and bits per dimension in
standardised units; AUROC of the NLL; capacity width x0.5, x1, x2."""),
    new_code_cell(SETUP),
    new_code_cell("""\
split = ex.digits_split(outlier_classes=(5, 6, 7, 8, 9), seed=0)
EPOCHS = 3 if FAST else 150
K = 8 if FAST else 64
WIDTHS = (1.0,) if FAST else (0.5, 1.0, 2.0)
runs = []
for width in WIDTHS:
    for learn in (False, True):
        runs.append(ex.run(split, "vae", latent_dim=16, hidden_dims=(128, 64), width=width,
                           learn_variance=learn, epochs=EPOCHS, is_samples=K,
                           keep_scores=("is_nll", "bpd")))
rows = []
for r in runs:
    inl, out = r.scores["bpd"][split.y_test == 0], r.scores["bpd"][split.y_test == 1]
    rows.append({"width": r.params["width"], "gamma": "learned" if r.params["learn_variance"] else "fixed (1)",
                 "final_gamma": round(r.final_metrics.get("gamma", 1.0), 4),
                 "auroc_is_nll": round(r.auroc["is_nll"], 4), "auroc_neg_elbo": round(r.auroc["neg_elbo"], 4),
                 "bpd_inliers": round(float(np.median(inl)), 3), "bpd_outliers": round(float(np.median(out)), 3),
                 "mmd_prior": round(r.mmd_prior, 4), "active_dims": r.active_dims})
gamma_table = pl.DataFrame(rows)
gamma_table"""),
    new_code_cell("""\
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for ax, r in zip(axes, [r for r in runs if r.params["width"] == 1.0]):
    nll = r.scores["is_nll"]
    hi = np.quantile(nll, 0.99)
    bins = np.linspace(nll.min(), hi, 40)
    ax.hist(nll[split.y_test == 0], bins=bins, alpha=0.6, density=True, label="inliers (0-4)")
    ax.hist(nll[split.y_test == 1], bins=bins, alpha=0.6, density=True, label="outliers (5-9)")
    ax.set_title(("learned" if r.params["learn_variance"] else "fixed") + f" gamma: AUROC {r.auroc['is_nll']:.3f}")
    ax.set_xlabel("importance-sampled NLL (nats)")
axes[0].legend()
plt.show()"""),
    new_markdown_cell("## Fixing gamma at its learned final value from the start"),
    new_code_cell("""\
learned = next(r for r in runs if r.params["width"] == 1.0 and r.params["learn_variance"])
final = learned.final_metrics.get("gamma", 1.0)
fixed_final = ex.run(split, "vae", latent_dim=16, hidden_dims=(128, 64), width=1.0, learn_variance=False,
                     init_log_gamma=max(math.log(final), -9.0), epochs=EPOCHS, is_samples=K)
compare = pl.DataFrame([
    {"variant": "learned gamma", "mmd_prior": learned.mmd_prior, "normal_recon_mse": learned.normal_recon_mse,
     "auroc_is_nll": learned.auroc["is_nll"]},
    {"variant": f"fixed at final gamma={final:.4f}", "mmd_prior": fixed_final.mmd_prior,
     "normal_recon_mse": fixed_final.normal_recon_mse, "auroc_is_nll": fixed_final.auroc["is_nll"]},
])
print(compare)
learned_row = gamma_table.filter((pl.col("width") == 1.0) & (pl.col("gamma") == "learned")).row(0, named=True)
fixed_row = gamma_table.filter((pl.col("width") == 1.0) & (pl.col("gamma") != "learned")).row(0, named=True)
print("outliers get a higher NLL than inliers (learned gamma):", learned_row["bpd_outliers"] > learned_row["bpd_inliers"])
print("learned gamma detects better than fixed gamma=1 (AUROC of NLL):", learned_row["auroc_is_nll"] > fixed_row["auroc_is_nll"])
print("fixing gamma at its final value trains worse (higher MMD):", fixed_final.mmd_prior > learned.mmd_prior)"""),
    new_markdown_cell("""\
## What the paper reported, what we measured

The verdicts above are computed from this run. The full-run figures are in the closing
note of the research-models issue and in `notebooks/README.md`."""),
]

DCVAE = [
    new_markdown_cell("""\
# (c) dCVAE vs VAE, CVAE and beta-VAE

**Paper's claim.** The disentangled conditional VAE (learned conditional prior r(z_i | c),
beta on the KL to it) detects anomalies better than VAE, CVAE and beta-VAE with the
reconstruction error as score. Reported AUC: MNIST dCVAE 88.31 vs VAE 88.21, beta-VAE
85.31; FashionMNIST 88.63 vs 84.12; EMNIST 78.98 vs 67.23; KMNIST 61.02 vs 51.13.

**Our data.** scikit-learn *digits*, one class at a time held out as the anomaly (the usual
one-vs-rest protocol, reversed: nine normal digits; the full run holds out digits 0, 2, 4, 6
and 8 to fit the CI machine's time). The condition c of each image is the
class an upstream classifier assigns it (nearest normal-class centroid): known for every
record at scoring time, like a context in streamvae. beta-VAE uses beta = 4; dCVAE beta = 1.
Score: reconstruction error (the paper's) and the negative ELBO."""),
    new_code_cell(SETUP),
    new_code_cell("""\
EPOCHS = 3 if FAST else 100
CLASSES = (0, 9) if FAST else (0, 2, 4, 6, 8)
MODELS = {"VAE": ("vae", {}), "beta-VAE (4)": ("vae", {"beta": 4.0}),
          "CVAE": ("cvae", {}), "dCVAE": ("dcvae", {})}
rows = []
for k in CLASSES:
    split = ex.digits_split(outlier_classes=(k,), seed=0)
    for name, (family, extra) in MODELS.items():
        r = ex.run(split, family, latent_dim=8, hidden_dims=(128, 64), epochs=EPOCHS, **extra)
        rows.append({"anomaly_class": k, "model": name, "auroc_recon_error": r.auroc["recon_error"],
                     "auroc_neg_elbo": r.auroc["neg_elbo"]})
results = pl.DataFrame(rows)
results.pivot(on="model", index="anomaly_class", values="auroc_recon_error")"""),
    new_code_cell("""\
summary = results.group_by("model").agg(
    pl.col("auroc_recon_error").mean().round(4).alias("mean_auroc_recon_error"),
    pl.col("auroc_neg_elbo").mean().round(4).alias("mean_auroc_neg_elbo"),
).sort("mean_auroc_recon_error", descending=True)
print(summary)
means = dict(zip(summary["model"], summary["mean_auroc_recon_error"]))
print("dCVAE beats VAE:", means["dCVAE"] > means["VAE"], "| beats beta-VAE:", means["dCVAE"] > means["beta-VAE (4)"],
      "| beats CVAE:", means["dCVAE"] > means["CVAE"])"""),
    new_markdown_cell("""\
## What the paper reported, what we measured

The verdicts above are computed from this run; the full-run table is in the closing note of
the research-models issue and in `notebooks/README.md`."""),
]

LOCALISATION = [
    new_markdown_cell("""\
# (d) Pixel-wise anomaly localisation with VAEs

**Paper's claim.** Gradient-based pixel predictors (ELBO-grad, Rec-grad) localise anomalies
better than the plain reconstruction error; beta = 10 was best for most predictors while
Combi degraded as beta grew. Reported pixel AUROC (brain MRI, latent 64): Rec-Error 0.856,
ELBO-grad 0.900, KL-grad 0.809, Rec-grad 0.900, Combi 0.800, Proj-Rec-Error 0.861.

**Our data.** scikit-learn's digits, upsampled to 32x32 (built into streamvae). A fully
convolutional VAE (16-32-64-256, LeakyReLU, learned decoder variance) learns normal digits;
200 held-out digits get one pasted anomaly each (a noise square, a bright blob, or a piece of
another digit), with the ground-truth mask known. Every predictor's map is scored by its
pixel-wise AUROC; the logistic-regression ensemble is fitted on 20 labelled images and
evaluated on the other 180. The grid and the code are `streamvae.bench.localisation`
(the same as `tests/benchmarks/test_localisation.py`)."""),
    new_code_cell(SETUP + """
from streamvae.bundle.image import ImageDetector
from streamvae.data.images import builtin_digits, paste_anomalies
from streamvae.scoring.maps import MAP_KINDS
from streamvae.workflows.images import ImageSettings, train_images
from streamvae.bench.localisation import LocalisationSettings, run_localisation, table"""),
    new_code_cell("""\
settings = LocalisationSettings(betas=(1.0,), latent_dims=(16,), epochs=2, test_images=40, labelled=10) if FAST \
    else LocalisationSettings()
rows = run_localisation(settings, say=print)
print(table(rows))"""),
    new_code_cell("""\
best = {r.beta: max(r.auroc, key=r.auroc.get) for r in rows}
grad_beats_rec = [max(r.auroc["elbo_grad"], r.auroc["rec_grad"]) > r.auroc["rec_error"] for r in rows]
print("best predictor per beta:", best)
print(f"a gradient predictor beats Rec-Error in {sum(grad_beats_rec)} of {len(rows)} cells:",
      "claim reproduced" if all(grad_beats_rec) else "claim not reproduced (see the table)")"""),
    new_markdown_cell("## Inputs, reconstructions and maps (beta 1, latent 32)"),
    new_code_cell("""\
images, _ = builtin_digits(32)
order = np.random.default_rng(0).permutation(len(images))
bundle = train_images(images[order[200:]], ImageSettings(latent_dim=32, epochs=2 if FAST else 40, device="cpu"))
detector = ImageDetector(bundle)
shown, masks, kinds = paste_anomalies(images[order[:6]], seed=1)
flat = shown.reshape(6, -1)
import torch
with torch.inference_mode():
    recon = detector.model(torch.as_tensor(flat)).recon.numpy().reshape(6, 32, 32)
maps = detector.maps(flat, MAP_KINDS, proj_steps=50)
columns = ["input", "mask", "reconstruction", *MAP_KINDS]
fig, axes = plt.subplots(6, len(columns), figsize=(1.6 * len(columns), 10))
for i in range(6):
    panels = [shown[i, 0], masks[i], recon[i], *(maps[k][i] for k in MAP_KINDS)]
    for j, (title, panel) in enumerate(zip(columns, panels)):
        axes[i, j].imshow(panel, cmap="gray" if j < 3 else "magma")
        axes[i, j].set_xticks([]); axes[i, j].set_yticks([])
        if i == 0:
            axes[i, j].set_title(title, fontsize=8)
    axes[i, 0].set_ylabel(kinds[i], fontsize=8)
# embed the figure as a PNG output (the Agg backend shows nothing by itself)
import io
from IPython.display import Image, display
buffer = io.BytesIO()
fig.tight_layout(); fig.savefig(buffer, format="png", dpi=80); plt.close(fig)
display(Image(buffer.getvalue()))"""),
    new_markdown_cell("""\
## What the paper reported, what we measured

The verdict above is computed from this run; the full-run table is in `notebooks/README.md`
and in the closing note of the images issue."""),
]

NOTEBOOKS = {
    "a_reconstruction_detection_tradeoff.ipynb": TRADEOFF,
    "b_learnable_gamma.ipynb": GAMMA,
    "c_dcvae_vs_baselines.ipynb": DCVAE,
    "d_pixel_localisation.ipynb": LOCALISATION,
}


def main() -> None:
    """Write (and with ``--execute`` run) every notebook."""
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    for name, cells in NOTEBOOKS.items():
        if only and not any(name.startswith(o) for o in only):
            continue
        nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
        path = HERE / name
        if "--execute" in sys.argv:
            from nbclient import NotebookClient

            NotebookClient(nb, timeout=3600, kernel_name="python3",
                           resources={"metadata": {"path": str(HERE)}}).execute()
        nbformat.write(nb, path)
        print("wrote", path)


if __name__ == "__main__":
    main()
