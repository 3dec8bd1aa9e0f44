"""Layer: cli. ``unlearnkit eval``: feature-space metrics of feature banks on disk, thin parsing
over ``unlearnkit.eval``."""

from __future__ import annotations

import pathlib


def cmd_eval(args) -> int:
    from ..eval import format_table, run

    result = run(args.forget, args.retain, args.test, gold_forget=args.gold_forget, gold_retain=args.gold_retain,
                 gold_test=args.gold_test, bank=args.bank, gold_bank=args.gold_bank, features_key=args.features_key,
                 labels_key=args.labels_key, split_key=args.split_key, memory_limit=args.memory_limit, ray=args.ray,
                 ray_num_cpus=args.ray_cpus, out=args.out, seed=args.seed, n_classes=args.n_classes,
                 energy=args.energy, k=args.da_k, center=args.center, knn_k=args.knn_k, knn_queries=args.knn_queries,
                 kmeans_rows=args.kmeans_rows, probe_rows=args.probe_rows, kmeans_n_init=args.kmeans_n_init,
                 chunk_rows=args.chunk_rows, progress=not args.quiet)
    print(format_table(result))
    for note in result["plan"]["notes"]:
        print(f"note: {note}")
    if args.out is not None:
        print(f"\nwrote {args.out}")
    return 0


def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="feature-space metrics of feature banks on disk (forget/retain/test), "
                                    "within a memory budget, optionally on a Ray cluster")
    g = e.add_argument_group("banks (.npy + <stem>.labels.npy, a folder of .npy, .npz, .safetensors, .parquet)")
    g.add_argument("--forget", metavar="PATH", help="forget-set features and labels")
    g.add_argument("--retain", metavar="PATH", help="retain-set features and labels")
    g.add_argument("--test", metavar="PATH", help="test-set features and labels")
    g.add_argument("--bank", metavar="FILE", help="instead of the three: one Parquet file with a split column")
    g.add_argument("--gold-forget", metavar="PATH", help="the retrained (gold) model's forget features")
    g.add_argument("--gold-retain", metavar="PATH")
    g.add_argument("--gold-test", metavar="PATH")
    g.add_argument("--gold-bank", metavar="FILE", help="gold banks in one Parquet file with a split column")
    g.add_argument("--features-key", default="features", help="array/tensor/column of the features (default: features)")
    g.add_argument("--labels-key", default="labels", help="array/tensor/column of the labels (default: labels)")
    g.add_argument("--split-key", default="split", help="Parquet column naming each row's set (default: split)")
    r = e.add_argument_group("resources")
    r.add_argument("--memory-limit", metavar="SIZE", help="peak resident memory per process, e.g. 4GiB, 512MB")
    r.add_argument("--ray", metavar="ADDRESS", help="run shards on Ray: 'auto' (local, started if needed) or an address")
    r.add_argument("--ray-cpus", type=int, help="CPUs of a Ray started locally by --ray auto (default: all)")
    r.add_argument("--chunk-rows", type=int, help="rows per streamed chunk (default: from --memory-limit)")
    m = e.add_argument_group("metrics")
    m.add_argument("--seed", type=int, default=0, help="fixes every sample and k-means (default 0)")
    m.add_argument("--n-classes", type=int, help="k of k-means (default: distinct labels)")
    m.add_argument("--energy", type=float, default=0.9, help="dimensional alignment: spectrum fraction kept (0.9)")
    m.add_argument("--da-k", type=int, help="dimensional alignment: eigen-directions kept (overrides --energy)")
    m.add_argument("--center", action="store_true", help="dimensional alignment on the covariance, not the second moment")
    m.add_argument("--knn-k", type=int, default=5, help="neighbours of the k-NN membership features (5)")
    m.add_argument("--knn-queries", type=int, default=1000, help="query rows per set for the k-NN attack (1000)")
    m.add_argument("--kmeans-rows", type=int, default=100_000, help="rows per set k-means is fit on (100000)")
    m.add_argument("--probe-rows", type=int, default=50_000, help="retain rows the linear probe trains on (50000)")
    m.add_argument("--kmeans-n-init", type=int, default=1, help="k-means restarts (1)")
    e.add_argument("--out", type=pathlib.Path, metavar="FILE", help="write the result JSON here (atomically)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_eval)
