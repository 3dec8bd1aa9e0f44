"""Layer: audit. Writing an audit: ``audit.json``, ``report.md`` (one table), ``eps_hist.png``
(a histogram of the per-example epsilons of every row) and ``per_example.npz``.

Every file is written to a temporary name and renamed (``unlearnkit.io``).
"""

from __future__ import annotations

import io as _io
import math
import pathlib

import numpy as np

from .. import io
from ..experiment.scores import FLOOR, ORIGINAL
from ..metrics import registry

__all__ = ["LEGEND", "table", "write_audit"]

# (header, key, format); formats take a float. Headers: the metric's short name in the registry
# and its direction mark (LEGEND): ↑ higher is better, ↓ lower is better, →0.5 closer to 0.5 is
# better (an attacker no better than a coin; below 0.5 is not better), →floor closer to the
# retrained floor's value; no mark: context.


def _head(*keys: str) -> str:
    specs = [registry.get(f"audit_{k}") for k in keys]
    name = specs[0].name if len(specs) == 1 else specs[0].label.rsplit(" ", 1)[0] + " med/p95"
    return f"{name} {registry.mark(specs[0].key)}".rstrip()


_COLUMNS: list[tuple[str, str | tuple[str, str], str]] = [(_head(k), k, f) for k, f in (
    ("k", "{:.0f}"), ("F", "{:.3f}"), ("challenge_score", "{:.3f}"), ("eps_median", "{:.2f}"),
    ("eps_at_clip", "{:.2f}"), ("ulira_balanced_accuracy", "{:.3f}"), ("ulira_auc", "{:.3f}"),
    ("ulira_tpr_at_1pct_fpr", "{:.3f}"))]
_COLUMNS += [(_head(f"klom_{s}_median", f"klom_{s}_p95"), (f"klom_{s}_median", f"klom_{s}_p95"), "{:.2f}")
             for s in ("forget", "retain", "test")]
_COLUMNS += [(_head(k), k, f) for k, f in (
    ("rmia_auc", "{:.3f}"), ("rmia_tpr_at_1pct_fpr", "{:.3f}"), ("retain_acc", "{:.3f}"), ("test_acc", "{:.3f}"),
    ("pool_seconds_mean", "{:.1f}"))]

#: What the marks in the headers mean (printed under the table).
LEGEND = ("↑ higher is better; ↓ lower is better; →0.5 closer to 0.5 is better (U-LiRA: 0.5 is an attacker no "
          "better than a coin, so 0.44 is not better than 0.5, it is as far from ideal as 0.56); →0.01 closer to the "
          "1% FPR (chance); →floor closer to the retrained floor's value.")


def _cell(row: dict, key, fmt: str) -> str:
    if isinstance(key, tuple):
        return " / ".join(_cell(row, k, fmt) for k in key)
    v = row.get(key)
    return "–" if v is None else fmt.format(v)


def table(scores: dict) -> str:
    """The markdown table: every method, then ``original`` and ``retrained floor``."""
    head = "| model | " + " | ".join(h for h, _, _ in _COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(_COLUMNS) + 1)]
    for name in scores["order"]:
        row = scores["rows"][name]
        if "error" in row:
            lines.append(f"| {name} | FAILED: {row['error']} |" + " |" * (len(_COLUMNS) - 1))
            continue
        lines.append(f"| {name} | " + " | ".join(_cell(row, k, f) for _, k, f in _COLUMNS) + " |")
    return "\n".join(lines)


def _footer(result: dict) -> str:
    rows = result["scores"]["rows"]
    k = result["pools"]["k"]
    floor = rows.get(FLOOR, {})
    eps_k = math.log(k - 1) if k > 2 else 0.0
    lines = [
        LEGEND,
        f"K = {k} models per pool (seeds 1..{k}). With K models the largest measurable per-example epsilon is "
        f"about ln(K - 1) = {eps_k:.2f} (exactly {rows[next(iter(rows))].get('largest_measurable_eps', float('nan')):.2f} "
        "at delta = 1e-5); a larger separation shows only as eps = 50 (a spike or a perfect split). "
        "F's bins end at ceil(ln(K - 1)).",
    ]
    if "error" not in floor:
        lines.append(f"The retrained floor compares the two halves of the retrained pool (K = {floor.get('k')} "
                     "against K = " f"{floor.get('k_ref')}): what an ideal method reaches at that pool size; its RMIA "
                     "takes every retrained model as the target against the others. F, eps and KLOM depend on "
                     "K (fewer bins, sparser histograms at K/2), so the floor's U-LiRA (0.5) and RMIA are the "
                     "ones to hold the methods against. `original` is doing nothing.")
    diffs = [f"{name} {row['F_vs_original']:+.3f} [{row['F_vs_original_low']:+.3f}, {row['F_vs_original_high']:+.3f}]"
             for name in result["scores"]["order"] if "F_vs_original" in (row := rows[name])]
    if diffs:
        n = result.get("meta", {}).get("n_forget", "the")
        lines.append(f"F minus the original's (doing nothing), 95% paired bootstrap interval over the {n} forget "
                     f"examples: {'; '.join(diffs)}. An interval holding 0 cannot tell the row from doing nothing; "
                     "it covers which examples were forgotten, not the pools' seeds.")
    lines += ["U-LiRA is the fixed-forget-set variant (one forget set, leave-one-out over both pools): 0.5 is "
              "indistinguishable from retraining. KLOM is KL(unlearned || retrained) of the margin histograms "
              "(20 bins), 0 is perfect. RMIA separates forget examples from unseen test examples with the retrained "
              "pool as references: a method should match the floor, not 0.5.",
              f"Pools ran on {result['pools']['executor'].get('name')} in {result['pools']['wall_seconds']:.1f} s "
              f"({result['pools']['threads']} torch thread(s) per task); the scores took "
              f"{result['scores'].get('metric_seconds', float('nan')):.2f} s."]
    return "\n\n".join(lines)


def _histograms(scores: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in scores["order"] if n in scores["arrays"]]
    cols = min(len(names), 4)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        k = scores["rows"][name]["k"]
        top = math.ceil(math.log(k - 1)) + 1.0 if k > 2 else 1.0  # the bins F scores, plus one
        eps = np.where(scores["arrays"][name]["eps"] >= 50, top + 0.25, np.minimum(scores["arrays"][name]["eps"],
                                                                               top - 0.01))
        ax.hist(eps, bins=np.r_[np.arange(0, top + 0.01, 0.25), top + 0.5],
                color="tab:red" if name == ORIGINAL else "tab:blue")
        ax.axvline(math.log(k - 1) if k > 2 else 0.0, color="grey", ls="--", lw=0.8)
        ax.set_title(f"{name} (K = {k})", fontsize=9)
        ax.set_xlabel("eps_i (dashed: ln(K - 1); last bar: 50)", fontsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with io.atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _jsonable(result: dict) -> dict:
    pools = result["pools"]
    return {"meta": {k: v for k, v in result.get("meta", {}).items() if k != "forget_idx"},
            "k": pools["k"], "rows": result["scores"]["rows"], "order": result["scores"]["order"],
            "executor": pools["executor"], "pool_wall_seconds": pools["wall_seconds"],
            "metric_seconds": result["scores"].get("metric_seconds"), "cached_models": pools["cached"],
            "errors": pools["errors"]}


def write_audit(result: dict, out_dir: str | pathlib.Path, *, plots: bool = True) -> dict[str, pathlib.Path]:
    """Writes the four files into ``out_dir`` (created); returns their paths."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "audit.json", "markdown": out / "report.md", "npz": out / "per_example.npz"}
    io.write_json(paths["json"], _jsonable(result))
    meta = result.get("meta", {})
    title = f"# Per-example audit: {meta.get('dataset', '?')} {meta.get('scenario', '')}".rstrip()
    sub = (f"forget set seed {meta.get('seed')}, {meta.get('n_forget')} forget / {meta.get('n_retain')} retain / "
           f"{meta.get('n_test')} test examples; methods monitor: {meta.get('monitor')}") if meta else ""
    body = [title, sub, table(result["scores"]), _footer(result)]
    if plots:
        paths["plot"] = out / "eps_hist.png"
        _histograms(result["scores"], paths["plot"])
        body.append("![per-example epsilon](eps_hist.png)")
    io.write_text(paths["markdown"], "\n\n".join(b for b in body if b) + "\n")
    arrays = {}
    for name, arr in result["scores"]["arrays"].items():
        for key, v in arr.items():
            arrays[f"{name.replace(' ', '_')}/{key}"] = v
    if "forget_idx" in meta:
        arrays["forget_idx"] = np.asarray(meta["forget_idx"])
    io.savez_compressed(paths["npz"], arrays)
    return paths
