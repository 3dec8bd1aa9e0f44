"""Plots of a report: where a person would rather look than read.

- ``embedding.png``: 2-D UMAP of penultimate features (retain grey, forget red), one panel per
  model: forget samples of a good method sit where the gold model puts them. Drawn only for units
  that carry a feature sample: a run with ``features=False`` (``--no-features``) keeps none, so
  it draws no embedding (the UMAP fit was most of such a run's time).
- ``loss_hist.png``: per model, the histograms of per-sample loss on forget vs test samples; the
  closer the two, the less a loss-based attack can tell forget samples from unseen ones.
- ``gaps.png``: average gap to gold per method (mean and std over seeds).
"""

from __future__ import annotations

import pathlib

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _embed(z: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    try:
        import umap

        return umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(z), "UMAP"
    except ImportError:  # the [plot] extra brings umap-learn; without it a linear map still shows the layout
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed).fit_transform(z), "PCA (install unlearnkit[plot] for UMAP)"


def _grid(n: int):
    cols = min(n, 4)
    return cols, -(-n // cols)


def plot_all(units: dict[str, dict], rows: list[dict], out_dir: str | pathlib.Path, *, title: str) -> list[pathlib.Path]:
    """``units``: {model name: arrays saved by the runner for the first seed}. Returns the files written."""
    from .. import io

    plt = _plt()
    out_dir = pathlib.Path(out_dir)
    written = []
    names = list(units)

    def save(fig, name):
        path = out_dir / name
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    with_feats = [n for n in names if "features" in units[n]]
    if with_feats:
        cols, nrows = _grid(len(with_feats))
        fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 3.2 * nrows), squeeze=False,
                                 constrained_layout=True)
        for ax, name in zip(axes.flat, with_feats):
            u = units[name]
            xy, how = _embed(u["features"], 0)
            f = u["is_forget"].astype(bool)
            ax.scatter(*xy[~f].T, s=2, c="0.7", label="retain")
            ax.scatter(*xy[f].T, s=3, c="tab:red", label="forget")
            ax.set_title(name, fontsize=9)
            ax.set_xticks([]), ax.set_yticks([])
        for ax in list(axes.flat)[len(with_feats):]:
            ax.axis("off")
        axes.flat[0].legend(loc="best", fontsize=7, markerscale=3)
        fig.suptitle(f"{title}\npenultimate features, {how}", fontsize=9)
        save(fig, "embedding.png")

    cols, nrows = _grid(len(names))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.8 * nrows), squeeze=False, constrained_layout=True)
    for ax, name in zip(axes.flat, names):
        u = units[name]
        # log10 of the loss: a trained model's losses span many decades, and membership shows in the small ones
        lf, lt = (np.log10(np.maximum(u[k], 1e-7)) for k in ("loss_forget", "loss_test"))
        bins = np.linspace(-7, max(1.0, float(np.r_[lf, lt].max())), 40)
        ax.hist(lt, bins, alpha=0.6, density=True, label="test", color="tab:blue")
        ax.hist(lf, bins, alpha=0.6, density=True, label="forget", color="tab:red")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("log10 cross-entropy (nats)", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{title}\nper-sample loss, forget vs test", fontsize=9)
    save(fig, "loss_hist.png")

    methods = [m for m in dict.fromkeys(r["model"] for r in rows) if m not in ("gold",)]
    means = [np.mean([r["avg_gap"] for r in rows if r["model"] == m]) * 100 for m in methods]
    stds = [np.std([r["avg_gap"] for r in rows if r["model"] == m]) * 100 for m in methods]
    fig, ax = plt.subplots(figsize=(max(4, 0.7 * len(methods) + 2), 3), constrained_layout=True)
    ax.bar(methods, means, yerr=stds, color=["0.6" if m == "original" else "tab:green" for m in methods], capsize=3)
    ax.set_ylabel("average gap to gold (points)")
    ax.set_title(f"{title}\nmean |Δ| over forget, retain, test accuracy and MIA (lower is better)", fontsize=9)
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    save(fig, "gaps.png")
    return written
