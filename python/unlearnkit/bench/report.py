"""Reports: tables (terminal and Markdown) with rows = models, columns = metrics and |gap to gold|,
results.json / results.csv, and plots. Over several seeds a cell is mean ± std."""

from __future__ import annotations

import csv
import io as _io
import pathlib

import numpy as np

from .. import io

# (key in a row, column header, scale for display). Accuracies, MIA and gaps in percent.
MAIN = [
    ("acc_forget", "forget acc", 100), ("acc_retain", "retain acc", 100), ("acc_test", "test acc", 100),
    ("mia", "MIA", 100), ("gap_acc_forget", "|Δforget|", 100), ("gap_acc_retain", "|Δretain|", 100),
    ("gap_acc_test", "|Δtest|", 100), ("gap_mia", "|ΔMIA|", 100), ("avg_gap", "avg gap", 100),
    ("act_dist", "act dist", 1), ("seconds", "time s", 1), ("rte", "time/retrain", 1),
]
MIA = [
    ("mia", "logistic p_y (headline)", 100), ("mia_svc_correctness", "SVC correct", 100),
    ("mia_svc_confidence", "SVC conf", 100), ("mia_svc_entropy", "SVC entropy", 100),
    ("mia_svc_m_entropy", "SVC m-entropy", 100), ("mia_svc_prob", "SVC prob", 100),
    ("mia_loss_threshold", "loss threshold", 100), ("mia_forget_vs_test", "forget-vs-test acc", 100),
    ("nomus", "NoMUS", 100), ("js", "JS to gold", 1), ("asr", "backdoor ASR", 100),
]
FEATURES = [
    ("da_forget", "DA forget", 100), ("da_test", "DA test", 100), ("lp_forget", "probe forget", 100),
    ("lp_retain", "probe retain", 100), ("lp_test", "probe test", 100), ("nmi_forget", "NMI forget", 100),
    ("nmi_test", "NMI test", 100), ("pair_f1_forget", "pair-F1 forget", 100), ("pair_f1_test", "pair-F1 test", 100),
    ("gap_da_forget", "|ΔDA forget|", 100), ("gap_nmi_forget", "|ΔNMI forget|", 100),
]
COLUMNS = MAIN  # the terminal table


def _models_in_order(rows):
    return list(dict.fromkeys(r["model"] for r in rows))


def _present(rows, columns):
    return [c for c in columns if any(c[0] in r for r in rows)]


def failures(rows: list[dict]) -> list[dict]:
    """The rows of methods that raised (``{"model", "seed", "error", ...}``); tables leave them out."""
    return [r for r in rows if "error" in r]


def summarize(rows: list[dict], columns=MAIN) -> list[dict]:
    """One entry per model: {"model", "n_seeds", key: (mean, std)} for every column key present.
    Failed runs (rows with an ``error``) are left out; ``n_seeds`` counts the runs that finished."""
    rows = [r for r in rows if "error" not in r]
    out = []
    for model in _models_in_order(rows):
        rs = [r for r in rows if r["model"] == model]
        entry = {"model": model, "n_seeds": len(rs)}
        for key, _, _ in columns:
            vals = np.array([r[key] for r in rs if key in r], dtype=float)
            if len(vals):
                entry[key] = (float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0)
        out.append(entry)
    return out


def _cell(mean, std, scale, n):
    digits = 1 if scale == 100 else 2
    s = f"{mean * scale:.{digits}f}"
    return s + f" ± {std * scale:.{digits}f}" if n > 1 else s


def table(rows: list[dict], *, markdown: bool = False, columns=MAIN) -> str:
    """Rows = models, columns = ``columns``. In Markdown, the best (smallest) value among the
    methods of each gap column is in bold."""
    columns = _present(rows, columns)
    summary = summarize(rows, columns)
    methods = [s for s in summary if s["model"] not in ("original", "gold")]
    best = {k: min((s[k][0] for s in methods if k in s), default=None)
            for k, _, _ in columns if k.startswith("gap_") or k == "avg_gap"}
    header = ["model"] + [h for _, h, _ in columns]
    body = []
    for s in summary:
        cells = [s["model"]]
        for key, _, scale in columns:
            if key not in s:
                cells.append("–")
                continue
            c = _cell(*s[key], scale, s["n_seeds"])
            if markdown and key in best and s in methods and s[key][0] == best[key]:
                c = f"**{c}**"
            cells.append(c)
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), "-" * len(fmt(header))] + [fmt(r) for r in body])


def closest_to_gold(rows: list[dict]) -> str | None:
    """The method with the smallest mean average gap (original and gold excluded)."""
    s = [e for e in summarize(rows) if e["model"] not in ("original", "gold")]
    return min(s, key=lambda e: e["avg_gap"][0])["model"] if s else None


def describe(meta: dict) -> str:
    env = meta["env"]
    return (f"dataset {meta['dataset']}, scenario {meta['scenario']}, model {meta['model']}, "
            f"seeds {list(meta['config']['seeds'])}, unlearnkit {env['unlearnkit']}, torch {env['torch']}, "
            f"device {env['device']}")


def write_report(result: dict, out_dir: str | pathlib.Path, *, plots: bool = True) -> dict[str, pathlib.Path]:
    """Writes results.json, results.csv, report.md and the plots into ``out_dir`` (each atomically)."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    paths = {"json": out_dir / "results.json", "csv": out_dir / "results.csv", "markdown": out_dir / "report.md"}
    io.write_json(paths["json"], result)
    keys = ["model", "seed", "scenario", "error"] + sorted({k for r in rows for k, v in r.items()
                                                            if isinstance(v, (int, float)) and k != "seed"})
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    io.write_text(paths["csv"], buf.getvalue())
    failed, done = failures(rows), [r for r in rows if "error" not in r]
    figures = []
    if plots:
        from .plots import plot_all

        first = result["meta"]["config"]["seeds"][0]
        units = {r["model"]: dict(np.load(out_dir / "units" / f"{r['unit']}.npz"))
                 for r in done if r["seed"] == first and (out_dir / "units" / f"{r['unit']}.npz").exists()}
        if units:
            figures = plot_all(units, done, out_dir, title=describe(result["meta"]))
    best = closest_to_gold(rows)
    md = [f"# unlearnkit report\n\n{describe(result['meta'])}\n",
          "Accuracies, MIA and gaps in %; |Δ| = |value − gold value|; avg gap = mean of |Δ| over forget, retain "
          "and test accuracy and MIA; time/retrain = method time / retraining time. Best gap among methods in bold."
          + (f" Closest to gold: **{best}**." if best else "") + "\n",
          "## Output space\n", table(rows, markdown=True, columns=MAIN) + "\n",
          "## Membership inference (fraction of forget samples called non-members) and distances to gold\n",
          table(rows, markdown=True, columns=MIA) + "\n"]
    if _present(rows, FEATURES):
        md += ["## Feature space\n", table(rows, markdown=True, columns=FEATURES) + "\n"]
    if failed:
        md += ["## Failed runs (left out of the tables)\n",
               "\n".join(f"- {r['model']}, seed {r['seed']}: `{r['error']}`" for r in failed) + "\n"]
    md += [f"![{f.stem}]({f.name})\n" for f in figures]
    io.write_text(paths["markdown"], "\n".join(md))
    paths.update({f.stem: f for f in figures})
    return paths
