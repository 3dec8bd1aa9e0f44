"""SISA's accuracy cost and unlearning cost on one dataset (the figures of docs/benchmarks.md, issue 18).

    python scripts/sisa_measure.py --dataset fashion-mnist-10k --shards 4,8 --slices 4

Trains one model with the dataset's recipe (its test accuracy and time: the reference), then for each S
a SISA ensemble of S shards x R slices with the same recipe (``train_sisa``; E epochs per shard), and
deletes, from a copy of the trained ensemble each time, one random training sample, 1% and 10% of the
training set (``SisaEnsemble.unlearn``). Prints one Markdown table: the aggregate's test accuracy
(mean of softmax outputs / label vote), the mean constituent's, the training and deletion seconds, the
shards retrained and from which slice, ``sample passes`` (the deletion's training work, the sum over
retrained slice steps of epochs x samples, over a full retraining's E x remaining samples: the
load-independent cost) and the aggregate's test accuracy after the deletion.

Seconds are wall time in this process (set OMP_NUM_THREADS to compare runs); nothing is cached.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from unlearnkit.bench.recipes import dataset_recipe
from unlearnkit.data import load_dataset
from unlearnkit.methods.sisa import train_sisa
from unlearnkit.models import build_model
from unlearnkit.training import TrainConfig, fit, predict


def accuracy(model, x, y) -> float:
    return float((predict(model, x).argmax(1) == y).float().mean())


def sample_passes(ens, report, epochs: int) -> float:
    """The deletion's training work over a full retraining's, counted in samples x epochs."""
    work = 0
    for s, r0 in report["from_slice"].items():
        in_shard = (ens.assignment[:, 0] == s) & ens.alive
        for r in range(r0, ens.slices):
            work += ens.epochs[r] * int((in_shard & (ens.assignment[:, 1] <= r)).sum())
    return work / (int(ens.alive.sum()) * epochs)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion-mnist-10k")
    ap.add_argument("--shards", default="4,8", help="comma-separated S values")
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    shards = [int(s) for s in args.shards.split(",")]
    data = load_dataset(args.dataset)
    recipe = dataset_recipe(args.dataset)
    cfg = TrainConfig(**recipe["train"])
    kwargs = recipe.get("model_kwargs", {})
    x, y, xt, yt = data.x_train, data.y_train, data.x_test, data.y_test
    n = len(y)

    torch.manual_seed(args.seed)
    one = build_model(recipe["model"], data, **kwargs)
    t0 = time.perf_counter()
    fit(one, x, y, cfg, seed=args.seed)
    one_s = time.perf_counter() - t0
    print(f"One model ({cfg.epochs} epochs, all {n} images): test accuracy {100 * accuracy(one, xt, yt):.1f}%, "
          f"training {one_s:.0f} s.\n")

    rng = np.random.default_rng(args.seed)
    forget_sets = [("1", rng.choice(n, 1, replace=False)), ("1%", rng.choice(n, n // 100, replace=False)),
                   ("10%", rng.choice(n, n // 10, replace=False))]
    print("| S | aggregate test acc (mean / vote) | mean constituent test acc | SISA training s | forget | "
          "shards retrained (from slices) | deletion s | sample passes / full retraining | test acc after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in shards:
        template = build_model(recipe["model"], data, **kwargs)
        t0 = time.perf_counter()
        ens = train_sisa(template, x, y, shards=s, slices=args.slices, epochs=cfg.epochs, batch_size=cfg.batch_size,
                         lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, seed=args.seed)
        train_s = time.perf_counter() - t0
        acc_mean = accuracy(ens, xt, yt)
        ens.aggregation = "vote"
        acc_vote = accuracy(ens, xt, yt)
        ens.aggregation = "mean"
        acc_const = float(np.mean([accuracy(m, xt, yt) for m in ens.constituents]))
        for label, idx in forget_sets:
            e = copy.deepcopy(ens)
            rep = e.unlearn(idx)
            passes = sample_passes(e, rep, cfg.epochs)
            starts = ", ".join(str(v) for v in rep["from_slice"].values())
            print(f"| {s} | {100 * acc_mean:.1f} / {100 * acc_vote:.1f} | {100 * acc_const:.1f} | {train_s:.0f} | "
                  f"{len(idx)} ({label}) | {len(rep['shards'])} ({starts}) | {rep['seconds']:.1f} | {passes:.2f} | "
                  f"{100 * accuracy(e, xt, yt):.1f} |", flush=True)


if __name__ == "__main__":
    main()
