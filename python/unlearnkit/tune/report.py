"""Layer: tune. What a search writes: ``trials.csv`` (every trial), ``recipes.toml`` (a complete
recipe section for the dataset, loadable by ``unlearnkit bench --recipes``), ``report.md`` (the
best value per method) and ``objective.png`` (objective vs trial).

Each file is written to a temporary name and renamed (``unlearnkit.io``). Values live only in
the recipes file; the report cites them.
"""

from __future__ import annotations

import copy
import csv
import io as _io
import json
import math
import pathlib

from .. import io
from ..experiment.recipes import load_recipes
from ..experiment.reference import parse_scenario
from ..metrics import registry

OBJECTIVE_METRICS = registry.headline(tuning=True)

#: the scenario whose tuned values are the dataset's plain ``methods`` recipes
DEFAULT_SCENARIO = "random-10"
#: trials.csv's columns: the trial's facts, the objective's metrics (read from the registry, under their
#: tuning names) and their closed shares.
CSV_FIELDS = ("method", "trial", "status", "objective", "score", "seconds", "rte", "params",
              *OBJECTIVE_METRICS, *(f"closed_{k}" for k in OBJECTIVE_METRICS), "objectives", "objective_sd", "error")


def write_trials_csv(rows: list[dict], path: str | pathlib.Path) -> None:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        out = dict(r)
        out["params"] = json.dumps(r["params"], sort_keys=True, default=float)
        w.writerow(out)
    io.write_text(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------- TOML
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"recipe value: expected a finite number, got {v!r}")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is a JSON string for the characters we write
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }" if v else "{}"
    raise TypeError(f"recipe value: expected a number, string, list or table, got {type(v).__name__} {v!r}")


def _is_section(v) -> bool:
    """A table holding tables (a dataset, ``methods``, ``scenarios``) becomes a [section]; a table of
    scalars and lists (``train``, ``model_kwargs``, one method's recipe) an inline table."""
    return isinstance(v, dict) and any(isinstance(x, dict) for x in v.values())


def dumps_toml(tree: dict, prefix: str = "") -> str:
    """A small TOML writer for recipe files (scalars, lists, inline tables, nested sections)."""
    lines = []
    scalars = {k: v for k, v in tree.items() if not _is_section(v)}
    if scalars:
        if prefix:
            lines.append(f"[{prefix}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
        lines.append("")
    for k, v in tree.items():
        if _is_section(v):
            lines.append(dumps_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(lines)


def tuned_recipes(dataset: str, scenario: str, best: dict[str, dict], base_path: str | None = None,
                  previous: str | pathlib.Path | None = None) -> dict:
    """The recipe tree ``{"datasets": {dataset: ...}}``: ``dataset``'s section of ``previous`` (an
    earlier search's recipes.toml) or else of ``base_path`` (default: the shipped recipes), with each
    tuned method's ``best`` values over its hand-made ones: in ``methods`` for the dataset's default
    scenario (random-10), in ``scenarios."<scenario>".methods`` for another percentage of random
    forgetting (e.g. random-30, which must not overwrite random-10's values), in
    ``scenarios.<kind>.methods`` for the other kinds (class, class_partial, subclass, backdoor), as
    ``method_recipe`` reads them. ``method_recipe`` reads ``methods``, then ``scenarios.<kind>``, then
    ``scenarios."<scenario>"``, each overriding the one before: where a section read after that default
    one already holds the method (e.g. MUDA's ``scenarios."random-10"``), the values go to the last such
    section, since values written before it would be read and overridden."""
    src = load_recipes(str(previous)) if previous and pathlib.Path(previous).exists() else load_recipes(base_path)
    if dataset not in src.get("datasets", {}):
        src = load_recipes(base_path)
    section = copy.deepcopy(src["datasets"][dataset])
    kind = parse_scenario(scenario)["forget"]
    # the sections method_recipe reads, in its order (None: the dataset's own ``methods``), and the default one
    order = [None, *dict.fromkeys((kind, scenario))]
    default = None if kind == "random" and scenario == DEFAULT_SCENARIO else (scenario if kind == "random" else kind)

    def table(key):
        return section.setdefault("methods", {}) if key is None else (
            section.setdefault("scenarios", {}).setdefault(key, {}).setdefault("methods", {}))

    later = order[order.index(default) + 1:]
    for method, params in best.items():
        holding = [k for k in later if method in section.get("scenarios", {}).get(k, {}).get("methods", {})]
        target = table(holding[-1] if holding else default)
        target[method] = {**target.get(method, {}), **params}
    return {"datasets": {dataset: section}}


def write_recipes(path: str | pathlib.Path, tree: dict, header: str) -> None:
    text = "".join(f"# {line}\n" for line in header.splitlines()) + "\n" + dumps_toml(tree)
    io.write_text(path, text)


# ------------------------------------------------------------------------------------------- report
def plot_objective(rows: list[dict], path: str | pathlib.Path) -> None:
    """One panel per method: each trial's objective (feasible finished trials), failed/infeasible/
    early-stopped trials as crosses at the bottom, and the running best."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    n = max(len(methods), 1)
    cols = min(n, 3)
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(4.2 * cols, 3.2 * -(-n // cols)), squeeze=False)
    for ax, m in zip(axes.flat, methods):
        rs = sorted((r for r in rows if r["method"] == m), key=lambda r: r["trial"])
        ok = [r for r in rs if r["status"] == "ok" and math.isfinite(r["objective"])]
        bad = [r for r in rs if r not in ok]
        ax.plot([r["trial"] for r in ok], [r["objective"] for r in ok], "o", ms=4, label="objective")
        best, line = -math.inf, []
        for r in rs:
            if r in ok:
                best = max(best, r["objective"])
            line.append(best if math.isfinite(best) else math.nan)
        ax.plot([r["trial"] for r in rs], line, "-", lw=1.5, label="best so far")
        if bad:
            lo = min([r["objective"] for r in ok] + [0.0]) - 0.1
            ax.plot([r["trial"] for r in bad], [lo] * len(bad), "x", color="C3", label="failed / infeasible / stopped")
        ax.set_title(m)
        ax.set_xlabel("trial")
        ax.set_ylabel("mean closed (validation)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _fmt(v, spec=".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _unit(meta: dict) -> str:
    """The time budget's unit as the report states it: which one was used, and the other beside it
    (a ⚠ when they disagree by more than ``objective.CACHED_UNIT_RATIO``)."""
    from .objective import cached_unit_ratio

    measured = meta.get("measured_retrain_seconds", meta["retrain_seconds"])
    cached = meta["cached_retrain_seconds"]
    if meta.get("retrain_time", "measure") == "measure":
        return (f"{meta['retrain_seconds']:.1f} s: one epoch timed now x the recipe's epochs; the cached gold model "
                f"took {cached:.1f} s")
    ratio, off = cached_unit_ratio(cached, measured)
    warn = (f"; ⚠ {ratio:.2f} x retraining timed now: recorded under another load or machine, the budget is that "
            f"much {'looser' if ratio > 1 else 'tighter'}" if off else "")
    return (f"{meta['retrain_seconds']:.1f} s: the cached gold model's recorded training time; retraining timed now: "
            f"{measured:.1f} s{warn}")


def report_markdown(rows: list[dict], best: dict[str, dict | None], starts: dict[str, dict], meta: dict) -> str:
    """``report.md``: the search's settings, then per method the hand-made recipe's objective (the
    first trial evaluates it), the best trial's objective, its time and values, and the counts."""
    seeds = meta.get("seeds", [meta["seed"]])
    lines = [f"# unlearnkit tune: {meta['dataset']}, {meta['scenario']}", "",
             f"Tuning seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} (never reported; a trial's "
             f"objective is the mean over them, the figures below are the first seed's), objective = mean closed "
             f"over UA, RA, TA, MIA on the "
             f"validation part of the test split, against that seed's gold model; trials over "
             f"{meta['max_rte']:g} x retraining time ({_unit(meta)})"
             + (f", or whose retain accuracy falls more than {100 * meta['max_retain_drop']:g} points below the "
                f"original's," if meta.get("max_retain_drop") is not None else "")
             + " are infeasible. "
             f"{meta['trials']} trials per method, Optuna TPE on Ray Tune"
             f"{', ASHA on per-epoch progress' if meta.get('asha') else ''}; "
             f"{meta['cpus']} CPU(s), {meta['cpus_per_trial']} per trial; search wall time {meta['wall_s']:.1f} s.", "",
             f"Gold on validation: forget {100 * meta['gold']['acc_forget']:.1f}, retain "
             f"{100 * meta['gold']['acc_retain']:.1f}, val {100 * meta['gold']['acc_val']:.1f}, MIA "
             f"{100 * meta['gold']['mia']:.1f}; original: forget {100 * meta['original']['acc_forget']:.1f}, retain "
             f"{100 * meta['original']['acc_retain']:.1f}, val {100 * meta['original']['acc_val']:.1f}, MIA "
             f"{100 * meta['original']['mia']:.1f} (%).", "",
             "| method | trials ok / infeasible / failed / stopped | hand-made recipe | best | best rte "
             "| written | values written |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for m in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == m]
        counts = " / ".join(str(sum(r["status"] == s for r in rs)) for s in ("ok", "infeasible", "failed",
                                                                             "early-stopped"))
        hand = next((r for r in rs if r["params"] == starts.get(m)), None)
        hand_s = "not run" if hand is None else (_fmt(hand["objective"]) if hand["status"] == "ok" else hand["status"])
        b = best.get(m)
        top = max((r for r in rs if r["status"] == "ok" and math.isfinite(r["objective"])),
                  key=lambda r: r["objective"], default=None)
        vals = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in b["params"].items()) \
            if b else "hand-made recipe kept"
        why = meta.get("decisions", {}).get(m, "")
        lines.append(f"| {m} | {counts} | {hand_s} | {_fmt(top['objective']) if top else 'n/a'} | "
                     f"{_fmt(top['rte'], '.3f') if top else 'n/a'} | {why} | {vals} |")
    lines += ["", "![objective vs trial](objective.png)", "",
              "Values: `recipes.toml` beside this file; every trial: `trials.csv`.", ""]
    return "\n".join(lines)
