"""TMU's cached curriculum model (issue 27): one deletion request unlearned three times, as trials
of a search do: without the cache (which also warms the process up: the first call of a process
pays one-off costs), then twice with ``cache_curriculum=True`` and a fresh cache folder.

The cold cached call trains the curriculum model and stores it; the warm one loads it. Reported per
call: wall seconds, the curriculum phase's seconds (the warm call's is the load), whether the
weights of the three results are equal (they must be: the cache changes the cost, never the result)
and the cost the bench books for each (wall plus ``Method.last_cached_seconds``).

    python benchmarks/bench_tmu_cache.py [--dataset digits] [--scenario random-10] [--seed 0]

``make bench`` runs it on digits (reference models of a few seconds). The figure in
docs/benchmarks.md is ``--dataset fashion-mnist-10k --scenario class-0-10`` with the shipped TMU
recipe, pinned to one core (``OMP_NUM_THREADS=1 taskset -c 1``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch

from unlearnkit.bench.recipes import dataset_recipe, method_recipe
from unlearnkit.checkpoints import default_cache_dir
from unlearnkit.data import load_dataset, make_split
from unlearnkit.experiment.reference import _train_reference, parse_scenario
from unlearnkit.methods import TMU
from unlearnkit.progress import ProgressBars
from unlearnkit.training import TrainConfig


def bench(dataset: str = "digits", scenario: str = "random-10", seed: int = 0) -> dict:
    recipe = dataset_recipe(dataset)
    train_cfg = TrainConfig(**recipe["train"])
    split = make_split(load_dataset(dataset), **parse_scenario(scenario), seed=seed, val_fraction=0.2,
                       heldout_fraction=0.2)
    original, _ = _train_reference("original", split, recipe["model"], recipe.get("model_kwargs", {}), train_cfg,
                                   seed, default_cache_dir(), "cpu", ProgressBars(disable=True), "fp32")
    hparams = {**method_recipe(dataset, "tmu", scenario=scenario), "cache_curriculum": True}
    calls = []
    with tempfile.TemporaryDirectory() as cache:
        for cached in (False, True, True):
            m = TMU(**{**hparams, "cache_curriculum": cached})
            t0 = time.perf_counter()
            out = m.unlearn(original, split.forget, split.retain, test=split.val, heldout=split.heldout, seed=seed,
                            cache_dir=cache)
            wall = time.perf_counter() - t0
            cost = next(e.logs for e in m.last_history if e.phase == "cost")
            calls.append({"wall_s": wall, "curriculum_s": cost.get("curriculum_loaded_s", cost["curriculum_s"]),
                          "cached": bool(cost["curriculum_cached"]), "booked_s": wall + m.last_cached_seconds,
                          "state": {k: v.clone() for k, v in out.state_dict().items()}})
    same = all(torch.equal(a, b) for c in calls[1:] for a, b in zip(calls[0]["state"].values(), c["state"].values()))
    return {"dataset": dataset, "scenario": scenario, "seed": seed, "calls": calls, "same_weights": same}


def rows_of(b: dict) -> list[dict]:
    _, cold, warm = b["calls"]
    note = (f"{b['dataset']} {b['scenario']} seed {b['seed']}: curriculum phase {cold['curriculum_s']:.2f} s cold, "
            f"{warm['curriculum_s']:.2f} s loaded; weights {'equal' if b['same_weights'] else 'DIFFER'}; "
            f"booked {cold['booked_s']:.2f} s / {warm['booked_s']:.2f} s")
    return [{"bench": "tmu", "case": "second call, cached curriculum", "ours_s": warm["wall_s"],
             "anchor": "the same call, cold", "anchor_s": cold["wall_s"], "goal": "equal weights", "note": note}]


def run() -> list[dict]:
    """`make bench`: digits, random-10, seed 0."""
    return rows_of(bench())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--scenario", default="random-10")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    b = bench(args.dataset, args.scenario, args.seed)
    for name, c in zip(("uncached", "cold", "warm"), b["calls"]):
        print(f"{name}: wall {c['wall_s']:.2f} s, curriculum phase {c['curriculum_s']:.2f} s, "
              f"from the cache: {c['cached']}, booked {c['booked_s']:.2f} s")
    print(f"weights equal: {b['same_weights']}")
    return 0 if b["same_weights"] else 1


if __name__ == "__main__":
    sys.exit(main())
