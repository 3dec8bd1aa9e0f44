"""Reports: tables (terminal and Markdown) with rows = models, columns = metrics, |gap to gold| and
``closed`` (the share of the original's distance to gold a method closed), results.json /
results.csv, and plots. Over several seeds a cell is mean ± std (over the seeds where it is defined).

Rows are ranked by mean closed over forget, retain and test accuracy and MIA (gold first; the mean
of the defined ``closed`` minus the damage on the metrics where it is n/a, ``evaluate.mean_closed``);
a method ranked below "original" (mean closed < 0: further from gold than doing nothing) is flagged.
"""

from __future__ import annotations

import csv
import io as _io
import pathlib

import numpy as np

from .. import io
from ..metrics import registry

# Columns are (key in a row, column header, scale for display), read from the metric registry when a
# table is made (``registry.columns(view)``): a metric registered with a view appears in that table.
# Accuracies, MIA and gaps in percent.
#: the demo's compact table: the headline accuracies, selectivity and closed share, the cost
DEMO_COLUMNS = [c for c in registry.columns("main") if c[0] in ("acc_forget", "acc_retain", "acc_test", "mia",
                                                                "selectivity", "damage", "mean_closed", "rte")]
BELOW_ORIGINAL = " ⚠ below original"
UNIFORM_DAMAGE = " ⚠ uniform damage"
DID_NOTHING = " (did nothing)"


def _spec(key: str):
    try:
        return registry.get(key)
    except KeyError:  # a column a caller made up
        return None


def _models_in_order(rows):
    return list(dict.fromkeys(r["model"] for r in rows))


def _present(rows, columns):
    return [c for c in columns if any(c[0] in r or c[0] in (r.get("na") or {}) for r in rows)]


def failures(rows: list[dict]) -> list[dict]:
    """The rows of methods that raised (``{"model", "seed", "error", ...}``); tables leave them out."""
    return [r for r in rows if "error" in r]


def summarize(rows: list[dict], columns=None) -> list[dict]:
    """One entry per model: {"model", "n_seeds", key: (mean, std) or None, "na": {key: reason}} for
    every column key present, ranked (``rank``). A value that is undefined (None/NaN, e.g. ``closed``
    where the original is within a point of gold) is left out of the mean; a key undefined in every
    seed is None (shown as n/a). Failed runs (rows with an ``error``) are left out; ``n_seeds``
    counts the runs that finished."""
    rows = [r for r in rows if "error" not in r]
    columns = registry.columns("main") if columns is None else columns
    out = []
    for model in _models_in_order(rows):
        rs = [r for r in rows if r["model"] == model]
        entry = {"model": model, "n_seeds": len(rs), "na": {}}
        for r in rs:
            entry["na"].update(r.get("na") or {})
        for key, _, _ in columns:
            present = [r[key] for r in rs if key in r]
            if not present:
                continue
            vals = np.array([np.nan if v is None else v for v in present], dtype=float)
            vals = vals[~np.isnan(vals)]
            entry[key] = ((float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0)
                          if len(vals) else None)
        # "did nothing": every seed's model is bit for bit the original (the runner compares weights)
        entry["did_nothing"] = model not in ("original", "gold") and all(r.get("did_nothing") for r in rs)
        entry["uniform_damage"] = _uniform_damage(rs)
        if "mean_closed" not in entry:  # rank on it even where the table does not show it
            mc = np.array([np.nan if r.get("mean_closed") is None else r["mean_closed"] for r in rs], dtype=float)
            mc = mc[~np.isnan(mc)]
            entry["mean_closed"] = (float(mc.mean()), 0.0) if len(mc) else None
        out.append(entry)
    return rank(out)


def _uniform_damage(rs: list[dict]) -> bool:
    """The ⚠ uniform-damage mark of a model over its seeds: ``evaluate.uniform_damage`` held on more
    than half of the seeds where it was computed."""
    flags = [r["uniform_damage"] for r in rs if r.get("uniform_damage") is not None]
    return bool(flags) and sum(flags) * 2 > len(flags)


def rank(summary: list[dict]) -> list[dict]:
    """Gold first, then every other model by mean closed, highest first (models without one last,
    in their order); each entry gets ``below_original`` (a method whose mean closed is < 0)."""
    def score(e):
        mc = e.get("mean_closed")
        return -np.inf if mc is None else mc[0]

    gold = [e for e in summary if e["model"] == "gold"]
    rest = sorted((e for e in summary if e["model"] != "gold"), key=score, reverse=True)  # stable
    for e in rest:
        e["below_original"] = e["model"] != "original" and e.get("mean_closed") is not None and score(e) < 0
    return gold + rest


def _cell(mean, std, scale, n):
    digits = 1 if scale == 100 else 2
    s = f"{mean * scale:.{digits}f}"
    return s + f" ± {std * scale:.{digits}f}" if n > 1 else s


def marks(entry: dict) -> str:
    """The flags after a model's name: ⚠ below original (mean closed < 0), ⚠ uniform damage (forget
    accuracy lowered with everything else, ``evaluate.uniform_damage``), (did nothing)."""
    return ((DID_NOTHING if entry.get("did_nothing") else "") + (BELOW_ORIGINAL if entry.get("below_original") else "")
            + (UNIFORM_DAMAGE if entry.get("uniform_damage") else ""))


def table(rows: list[dict], *, markdown: bool = False, columns=None) -> str:
    """Rows = models, columns = ``columns``. In Markdown, the best value among the methods of each
    gap / closed column is in bold, only when every method ran on more than one seed (a best on
    one seed is noise until its spread is shown) and never for a row that did nothing."""
    columns = registry.columns("main") if columns is None else columns
    columns = [c for c in columns if any(c[0] in r or c[0] in (r.get("na") or {}) for r in rows)]
    summary = summarize(rows, columns)
    methods = [s for s in summary if s["model"] not in ("original", "gold") and not s.get("did_nothing")]
    if any(s["n_seeds"] < 2 for s in methods):
        methods = []  # no bold
    best = {}
    for k, _, _ in columns:
        vals = [s[k][0] for s in methods if s.get(k) is not None]
        spec = _spec(k)
        if vals and spec is not None and spec.best and spec.direction in ("lower", "higher"):
            best[k] = min(vals) if spec.direction == "lower" else max(vals)
    header = ["model"] + [h for _, h, _ in columns]
    body = []
    for s in summary:
        cells = [s["model"] + marks(s)]
        for key, _, scale in columns:
            if key in s["na"] or (key in s and s[key] is None):
                cells.append("n/a")
                continue
            if key not in s:
                cells.append("–")
                continue
            mean, std = s[key]
            c = _cell(mean, std, scale, s["n_seeds"])
            if markdown and key in best and s in methods and s[key][0] == best[key]:
                c = f"**{c}**"
            cells.append(c)
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]

    def fmt(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([fmt(header), "-" * len(fmt(header))] + [fmt(r) for r in body])


def closest_to_gold(rows: list[dict]) -> str | None:
    """The method ranked first (highest mean closed; the smallest mean average gap where closed is
    undefined everywhere), original, gold and rows that did nothing excluded; None if no method
    finished. A ranking, not a verdict: :func:`verdict` says whether it is separable."""
    s = [e for e in summarize(rows) if e["model"] not in ("original", "gold") and not e.get("did_nothing")]
    if not s:
        return None
    if any(e.get("mean_closed") is not None for e in s):
        return s[0]["model"]  # summarize ranks by mean closed
    return min(s, key=lambda e: e["avg_gap"][0])["model"]


def verdict(rows: list[dict]) -> str | None:
    """One sentence on the top-ranked method that claims no more than the seeds show: its mean closed
    with the spread; on one seed, no claim of "best"; over several, whether the runner-up's mean lies
    within the leader's spread (not separable)."""
    s = [e for e in summarize(rows) if e["model"] not in ("original", "gold") and not e.get("did_nothing")
         and e.get("mean_closed") is not None]
    if not s:
        return None
    top = s[0]
    mc, sd = top["mean_closed"]
    if top["n_seeds"] < 2:
        return (f"Highest mean closed on this one seed: {top['model']} ({mc:.2f}); one seed shows no spread, so this "
                "is no ranking (run more seeds).")
    text = f"Highest mean closed: {top['model']} ({mc:.2f} ± {sd:.2f} over {top['n_seeds']} seeds)"
    if len(s) > 1:
        nxt = s[1]
        if nxt["mean_closed"][0] >= mc - sd:
            return text + (f"; not separable from {nxt['model']} ({nxt['mean_closed'][0]:.2f} ± "
                           f"{nxt['mean_closed'][1]:.2f}), within its spread.")
        return text + f"; the next, {nxt['model']}, is below its spread ({nxt['mean_closed'][0]:.2f})."
    return text + "."


def regime_notes(rows: list[dict]) -> list[str]:
    """Sentences the reader must see before trusting a ranking:

    - metrics on which the original is within a point of gold (``closed`` undefined there; if on all
      four, the regime cannot rank methods: doing nothing already looks like retraining);
    - metrics no method moves toward gold (every method's |gap| at least the original's);
    - whether the method closest to gold is any closer than the original at all.
    Empty when there is nothing to say (or no original/gold rows)."""
    from ..experiment.evaluate import CLOSED_METRICS, MIN_GAP_POINTS

    summary = {e["model"]: e for e in summarize(rows)}
    if "original" not in summary or "gold" not in summary:
        return []
    o, g = summary["original"], summary["gold"]
    notes = []
    near = [m for m in CLOSED_METRICS if m in o and m in g and abs(o[m][0] - g[m][0]) * 100 < MIN_GAP_POINTS]
    if near:
        names = ", ".join(f"{registry.get(m).label} ({100 * o[m][0]:.1f} vs gold {100 * g[m][0]:.1f})" for m in near)
        if len(near) == len(CLOSED_METRICS):
            notes.append(f"**This regime cannot rank methods**: the original model, which forgot nothing, is within "
                         f"{MIN_GAP_POINTS:g} point of gold on every headline metric ({names}); closed is n/a.")
        else:
            notes.append(f"The original model is within {MIN_GAP_POINTS:g} point of gold on {names}: closed is "
                         "n/a there (those metrics cannot tell forgetting from doing nothing); what a method "
                         "loses on them beyond the original's distance is the damage column, subtracted "
                         "from the mean closed in units of the original's mean distance on the others.")
    methods = [e for m, e in summary.items() if m not in ("original", "gold")]
    if methods:
        for m in CLOSED_METRICS:
            k = f"gap_{m}"
            if k in o and o[k][0] * 100 >= MIN_GAP_POINTS and all(e.get(k) is None or e[k][0] >= o[k][0]
                                                                   for e in methods):
                notes.append(f"No method moves {registry.get(m).label} toward gold (original {100 * o[m][0]:.1f}, gold "
                             f"{100 * g[m][0]:.1f}): every method is at least as far from gold there as doing nothing.")
        best = closest_to_gold(rows)
        e = summary.get(best) if best else None
        if e is not None and e.get("mean_closed") is not None:  # the headline decides, as the ranking does
            if e["mean_closed"][0] <= 0:
                notes.append(f"No method is closer to gold than the original on the headline (best: {best}, mean "
                             f"closed {e['mean_closed'][0]:.2f}; the original's is 0).")
        elif e is not None and e["avg_gap"][0] >= o["avg_gap"][0]:
            notes.append(f"No method is closer to gold than the original on average (best: {best}, avg gap "
                         f"{100 * e['avg_gap'][0]:.1f} vs the original's {100 * o['avg_gap'][0]:.1f}).")
        below = [e["model"] for e in methods if e.get("below_original")]
        if below:
            notes.append(f"Ranked below the original (mean closed < 0, worse than doing nothing): {', '.join(below)}.")
        damaged = [e["model"] for e in methods if e.get("uniform_damage")]
        if damaged:
            notes.append(f"Uniform damage (forget accuracy moved toward gold's, but selectivity < 0.25: retain "
                         f"accuracy fell with it; that is damage, not forgetting): {', '.join(damaged)}.")
        idle = [e["model"] for e in methods if e.get("did_nothing")]
        if idle:
            notes.append(f"Did nothing (weights bit for bit the original's on every seed): {', '.join(idle)}.")
    return notes


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
    best = verdict(rows)
    notes = regime_notes(rows)
    na: dict[str, str] = {}
    for r in done:
        na.update(r.get("na") or {})
    md = [f"# unlearnkit report\n\n{describe(result['meta'])}\n",
          "Accuracies, MIA and gaps in %; |Δ| = |value − gold value|; avg gap = mean of |Δ| over forget, retain "
          "and test accuracy and MIA; closed = 1 − |value − gold| / |original − gold| per metric (1 = as "
          "retrained, 0 = did nothing, < 0 = worse than nothing; n/a where the original is within 1 point of "
          "gold); damage = points lost on the n/a metrics beyond the original's distance, over the original's "
          "mean distance on the defined ones and their count; mean closed = mean of the defined closed − "
          "damage (original 0, gold 1); selectivity = (retain acc − forget acc) / gold's (1 = as selective as "
          "retraining, 0 = forget and retain moved alike; n/a where gold's difference is under 1 point); rows "
          "ranked by mean closed; time/retrain = method time / retraining time. Best gap and closed among "
          "methods in bold (over several seeds only; never a row that did nothing)."
          + (f" {best}" if best else "") + "\n",
          *[f"- {n}" for n in notes], *([""] if notes else []),
          *[f"- n/a in {k}: {reason}" for k, reason in sorted(na.items())], *([""] if na else []),
          "## Output space\n", table(rows, markdown=True, columns=registry.columns("main")) + "\n",
          "## Membership inference (fraction of forget samples called non-members) and distances to gold\n",
          table(rows, markdown=True, columns=registry.columns("membership")) + "\n"]
    if _present(rows, registry.columns("features")):
        md += ["## Feature space\n", table(rows, markdown=True, columns=registry.columns("features")) + "\n"]
    if _present(rows, registry.columns("audit")):
        md += ["## Per-example audit (pools of K models; the gold row is the retrained floor, K/2 per half: "
               "compare U-LiRA and RMIA across rows, F/eps/KLOM only between methods and the original; →0.5: closer "
               "to 0.5 is better (chance: the attack cannot tell), not lower; →floor: closer to the retrained "
               "floor's value is better)\n",
               table(rows, markdown=True, columns=registry.columns("audit")) + "\n"]
    if failed:
        md += ["## Failed runs (left out of the tables)\n",
               "\n".join(f"- {r['model']}, seed {r['seed']}: `{r['error']}`" for r in failed) + "\n"]
    md += [f"![{f.stem}]({f.name})\n" for f in figures]
    io.write_text(paths["markdown"], "\n".join(md))
    paths.update({f.stem: f for f in figures})
    return paths
