"""Generates one documentation page per method and per metric from the code itself (run by
mkdocs-gen-files at build time), so a new method or metric is documented the moment it is
registered: its docstring (paper, formula), its hyper-parameters with defaults and tuning ranges (the
``space=`` of each ``Params`` field, what ``unlearnkit tune`` searches), its recipes."""

import dataclasses
import inspect

import mkdocs_gen_files

import unlearnkit.metrics as M
from unlearnkit._validation import Space, constraints
from unlearnkit.bench.recipes import load_recipes
from unlearnkit.methods import METHODS

recipes = load_recipes()["datasets"]


def describe_space(s: Space | None) -> str:
    """A tuning range as the docs show it, e.g. "log-uniform [1e-05, 0.1]", "integers 1..10"."""
    if s is None:
        return "not tuned"
    if s.kind == "choice":
        return "one of " + ", ".join(f"`{c!r}`" for c in s.choices)
    if s.kind == "int":
        return f"integers {int(s.low)}..{int(s.high)}" + (" (log scale)" if s.log else "")
    return f"{'log-uniform' if s.kind == 'log' else 'uniform'} [{s.low:g}, {s.high:g}]"


with mkdocs_gen_files.open("methods/index.md", "w") as fh:
    fh.write("# Methods\n\nEvery method has the same interface: "
             "`get_method(name)(**hparams).unlearn(model, forget, retain, test=..., seed=...)`.\n\n"
             "| name | class | paper |\n|---|---|---|\n")
    for name, cls in sorted(METHODS.items()):
        fh.write(f"| [`{name}`]({name}.md) | `{cls.__name__}` | {cls.paper} |\n")

for name, cls in sorted(METHODS.items()):
    with mkdocs_gen_files.open(f"methods/{name}.md", "w") as fh:
        fh.write(f"# {cls.__name__} (`{name}`)\n\n**Paper:** {cls.paper}\n\n")
        fh.write(f"::: {cls.__module__}.{cls.__qualname__}\n    options:\n      show_root_heading: false\n\n")
        fh.write("## Hyper-parameters, defaults and search space\n\n"
                 "The search space is what `unlearnkit tune` searches (see [Tuning](../tune.md)).\n\n"
                 "| field | default | search space |\n|---|---|---|\n")
        cons = constraints(cls.Params)
        for f in dataclasses.fields(cls.Params):
            default = f.default if f.default is not dataclasses.MISSING else "(required)"
            doc = f" ({cons[f.name].doc})" if cons[f.name].doc else ""
            fh.write(f"| `{f.name}`{doc} | `{default!r}` | {describe_space(cons[f.name].space)} |\n")
        fh.write("\n## Recipes (`unlearnkit/bench/recipes.toml`)\n\n")
        rows = [(ds, r.get("methods", {}).get(name)) for ds, r in recipes.items()]
        rows = [(ds, r) for ds, r in rows if r]
        if rows:
            fh.write("| dataset | overrides |\n|---|---|\n")
            for ds, r in rows:
                fh.write(f"| {ds} | `{r}` |\n")
        else:
            fh.write("No dataset-specific recipe: the defaults above apply.\n")
        fh.write(f"\n## Run it\n\n```bash\nunlearnkit bench --dataset digits --scenario random-10 --methods {name}\n"
                 f"unlearnkit tune --dataset digits --scenario random-10 --methods {name} --trials 20 --out t\n```\n")

groups = {"output": "Output space", "membership": "Membership inference", "clustering": "Clustering scores",
          "kmeans": "k-means", "neighbors": "Nearest neighbours", "alignment": "Dimensional alignment"}
with mkdocs_gen_files.open("metrics/index.md", "w") as fh:
    fh.write("# Metrics\n\nscikit-learn style: arrays in (numpy or torch), floats or dicts out. "
             "One page per metric, with its formula.\n\n")
    for name in sorted(M.__all__):
        obj = getattr(M, name)
        if not callable(obj):
            continue
        group = groups.get(obj.__module__.rsplit(".", 1)[-1], obj.__module__)
        first = (inspect.getdoc(obj) or "").split("\n")[0]
        fh.write(f"- [`{name}`]({name}.md) ({group}): {first}\n")

for name in sorted(M.__all__):
    obj = getattr(M, name)
    if not callable(obj):
        continue
    with mkdocs_gen_files.open(f"metrics/{name}.md", "w") as fh:
        fh.write(f"# `{name}`\n\n::: {obj.__module__}.{name}\n    options:\n      show_root_heading: false\n")
