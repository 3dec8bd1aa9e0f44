"""Reports: one table (terminal and Markdown) with rows = models and columns = metrics and
|gap to gold|, plus results.json and results.csv. Values over several seeds show mean +- std."""

from __future__ import annotations

import csv
import io as _io
import pathlib

import numpy as np

from .. import io

# (key in a row, column header, scale for display)
COLUMNS = [
    ("acc_forget", "forget acc", 100), ("acc_retain", "retain acc", 100), ("acc_test", "test acc", 100),
    ("mia", "MIA", 100), ("gap_acc_forget", "|Δforget|", 100), ("gap_acc_retain", "|Δretain|", 100),
    ("gap_acc_test", "|Δtest|", 100), ("gap_mia", "|ΔMIA|", 100), ("avg_gap", "avg gap", 100),
    ("act_dist", "act dist", 1), ("seconds", "time s", 1), ("rte", "time/retrain", 1),
]


def _models_in_order(rows):
    seen = []
    for r in rows:
        if r["model"] not in seen:
            seen.append(r["model"])
    return seen


def summarize(rows: list[dict]) -> list[dict]:
    """One entry per model: {"model", "n_seeds", key: (mean, std)} for every column key."""
    out = []
    for model in _models_in_order(rows):
        rs = [r for r in rows if r["model"] == model]
        entry = {"model": model, "n_seeds": len(rs)}
        for key, _, _ in COLUMNS:
            vals = np.array([r[key] for r in rs], dtype=float)
            entry[key] = (float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0)
        out.append(entry)
    return out


def _cell(mean, std, scale, n):
    digits = 1 if scale == 100 else 2
    s = f"{mean * scale:.{digits}f}"
    return s + f" ± {std * scale:.{digits}f}" if n > 1 else s


def table(rows: list[dict], *, markdown: bool = False) -> str:
    """The comparison table; in Markdown the smallest avg gap among methods is in bold.
    Accuracies, MIA and gaps are in percent; times in seconds."""
    summary = summarize(rows)
    methods = [s for s in summary if s["model"] not in ("original", "gold")]
    best = min((s["avg_gap"][0] for s in methods), default=None)
    header = ["model"] + [h for _, h, _ in COLUMNS]
    body = []
    for s in summary:
        cells = [s["model"]]
        for key, _, scale in COLUMNS:
            c = _cell(*s[key], scale, s["n_seeds"])
            if markdown and key == "avg_gap" and s in methods and s[key][0] == best:
                c = f"**{c}**"
            cells.append(c)
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), "-" * len(fmt(header))] + [fmt(r) for r in body])


def describe(meta: dict) -> str:
    env = meta["env"]
    seeds = meta["config"]["seeds"]
    return (f"dataset {meta['dataset']}, scenario {meta['scenario']}, model {meta['model']}, seeds {list(seeds)}, "
            f"unlearnkit {env['unlearnkit']}, torch {env['torch']}, device {env['device']}")


def write_report(result: dict, out_dir: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """Writes results.json, results.csv and report.md into ``out_dir`` (each atomically)."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "csv": out_dir / "results.csv", "markdown": out_dir / "report.md"}
    io.write_json(paths["json"], result)
    keys = ["model", "seed", "scenario"] + [k for k, _, _ in COLUMNS] + ["ua", "n_forget"]
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(result["rows"])
    io.write_text(paths["csv"], buf.getvalue())
    md = (f"# unlearnkit report\n\n{describe(result['meta'])}\n\n"
          "Accuracies, MIA (fraction of forget samples an attack calls non-members) and gaps in %; "
          "|Δ| = |value − gold value|; avg gap = mean of the four |Δ|; best avg gap in bold.\n\n"
          + table(result["rows"], markdown=True) + "\n")
    io.write_text(paths["markdown"], md)
    return paths
