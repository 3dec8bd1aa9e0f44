"""Layer: audit. The pools of models behind the per-example audit, one Ray task per model.

For one split (one forget set) and K pool seeds k = 1..K:

- the retrained pool R_k: trained on the retain set only, seed k (the bench's "gold" model);
- the original pool O_k: trained on the whole training set, seed k;
- per method, the unlearned pool U_k: the method applied to O_k with seed k.

Every model is a content-keyed checkpoint of :mod:`unlearnkit.checkpoints` (R and O with the
bench's own keys, so the bench and the audit share them): pools are shared by every method and
every later run, a rerun trains nothing twice and an interrupted audit resumes where it stopped.

A task is a pure function of (split, setup, member) that limits its own torch threads to
``setup.threads`` and returns the member's outputs on the forget, retain and test sets; the
same task run in this process or on any Ray worker gives the same bytes (tested). Methods are
given the split's validation part (``split.val``) to monitor, never the test part.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..checkpoints import cache_key, cached_train
from ..fanout import gather, ray_session, require_ray
from ..methods import get_method
from ..metrics.per_example import logit_scaled_confidence, margins
from ..models import build_model
from ..training import TrainConfig, fit, predict

__all__ = ["Member", "PoolSetup", "pool_members", "run_pools"]

#: The sets every member is evaluated on (the split's evaluation part of the test split is "test").
SETS = ("forget", "retain", "test")


@dataclass(frozen=True)
class PoolSetup:
    """What every model of the pools shares.

    Attributes:
        model: a name from ``unlearnkit.models.MODELS``.
        model_kwargs: its arguments (e.g. channel widths).
        train: how the original and retrained models are trained.
        cache_dir: the checkpoint cache.
        device: torch device of each task.
        threads: torch threads of each task (its CPU share; Ray reserves as many CPUs per task).
    """

    model: str
    train: TrainConfig
    cache_dir: str
    model_kwargs: dict = field(default_factory=dict)
    device: str = "cpu"
    threads: int = 1


@dataclass(frozen=True)
class Member:
    """One model of one pool: ``kind`` is "original", "retrained" or "unlearned" (then ``method``
    and ``hparams`` say which), ``k`` its pool seed."""

    kind: str
    k: int
    method: str | None = None
    hparams: dict = field(default_factory=dict)

    @property
    def method_name(self) -> str:
        """The method of an unlearned member; ValueError for a reference (original or retrained) model."""
        if self.method is None:
            raise ValueError(f"member: a {self.kind} model has no method")
        return self.method

    @property
    def pool(self) -> str:
        return self.method_name if self.kind == "unlearned" else self.kind

    @property
    def ident(self) -> tuple:
        """(kind, k, method): unique within one audit (one hyper-parameter set per method)."""
        return (self.kind, self.k, self.method)


def pool_members(k: int, methods: dict[str, dict]) -> list[Member]:
    """Every member, references first (seeds 1..k), then each method's pool."""
    seeds = range(1, k + 1)
    out = [Member("original", s) for s in seeds] + [Member("retrained", s) for s in seeds]
    for name, hp in methods.items():
        out += [Member("unlearned", s, name, dict(hp)) for s in seeds]
    return out


# ---------------------------------------------------------------------------------------------
# cache keys


def _hash_tensors(*tensors) -> str | None:
    if all(t is None for t in tensors):
        return None
    h = hashlib.sha256()
    for t in tensors:
        if t is not None:
            h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def monitor_set(split):
    """What a method may monitor: ``split.val``. A split without a validation part (an empty
    ``val``, or an older ``UnlearningSplit`` without the attribute) gives None: the method then
    monitors nothing rather than the test part."""
    val = getattr(split, "val", None)
    return val if val is not None and len(val) else None


def reference_key(kind: str, split, setup: PoolSetup, seed: int, data_fingerprint: str) -> str:
    """The bench's cache key of an original (``kind="original"``) or retrained (``"gold"``) model
    (``unlearnkit.experiment.reference.train_reference``: the same fields, so both share checkpoints)."""
    forget = cache_key(forget_idx=split.forget_idx.tolist()) if kind == "gold" else None
    return cache_key(kind=kind, data=data_fingerprint, forget=forget, model=setup.model,
                     model_kwargs=setup.model_kwargs, train=setup.train.to_dict(), seed=seed)


def member_keys(members: list[Member], split, setup: PoolSetup) -> dict[tuple, str]:
    """The checkpoint key of every member (the data are hashed once, here)."""
    fp = split.data.fingerprint()
    val = monitor_set(split)
    monitor = _hash_tensors(*val.tensors) if val is not None else None
    heldout = _hash_tensors(*split.heldout.tensors) if len(split.heldout_idx) else None
    forget = cache_key(forget_idx=split.forget_idx.tolist())
    keys: dict[tuple, str] = {}
    for m in members:
        if m.kind == "original":
            keys[m.ident] = reference_key("original", split, setup, m.k, fp)
        elif m.kind == "retrained":
            keys[m.ident] = reference_key("gold", split, setup, m.k, fp)
        else:
            needs = getattr(get_method(m.method_name), "needs_heldout", False)
            keys[m.ident] = cache_key(kind="unlearned", original=reference_key("original", split, setup, m.k, fp),
                                forget=forget, method=m.method, hparams=m.hparams, seed=m.k, monitor=monitor,
                                heldout=heldout if needs else None)
    return keys


# ---------------------------------------------------------------------------------------------
# one task


def _reference(kind: str, split, setup: PoolSetup, k: int, key: str):
    """Trains (or loads) O_k (``kind="original"``) or R_k (``"gold"``) exactly as the bench does."""
    data = split.data
    idx = np.arange(len(data.y_train)) if kind == "original" else split.retain_idx
    if kind == "gold":
        assert np.intersect1d(idx, split.forget_idx).size == 0, "a retrained model must never see a forget sample"
    torch.manual_seed(k)
    model = build_model(setup.model, data, **setup.model_kwargs).to(setup.device)
    x, y = data.x_train[torch.from_numpy(idx)], data.y_train[torch.from_numpy(idx)]
    return cached_train(model, lambda m: fit(m, x, y, setup.train, seed=k, source=kind),
                        cache_dir=setup.cache_dir, key=key, name=f"{data.name}-{kind}")


def member_outputs(model, split) -> dict:
    """Per set (forget, retain, test): phi (logit-scaled confidence), margin, p (p_y), all
    float64, and correct (bool), each of shape (n,)."""
    out = {}
    for name in SETS:
        x, y = getattr(split, name).tensors
        z = predict(model, x).double().numpy()
        yy = y.numpy()
        zs = z - z.max(axis=1, keepdims=True)
        log_p = zs[np.arange(len(yy)), yy] - np.log(np.exp(zs).sum(axis=1))
        out[name] = {"phi": logit_scaled_confidence(z, yy), "margin": margins(z, yy), "p": np.exp(log_p),
                     "correct": z.argmax(axis=1) == yy}
    return out


def run_member(split, setup: PoolSetup, member: Member, key: str, original_key: str | None = None,
               _after=None) -> dict:
    """Trains, loads or unlearns one member and returns ``{"member", "outputs", "seconds",
    "cached", "key"}`` (or ``"error"`` for an unlearned model whose method failed).

    Runs with ``setup.threads`` torch threads (restored afterwards). ``_after`` is ignored: the
    Ray path passes the original's result there so that U_k starts after O_k is cached.
    """
    prev = torch.get_num_threads()
    torch.set_num_threads(setup.threads)
    try:
        if member.kind in ("original", "retrained"):
            kind = "original" if member.kind == "original" else "gold"
            model, meta = _reference(kind, split, setup, member.k, key)
            return {"member": member, "outputs": member_outputs(model, split), "seconds": meta["seconds"],
                    "cached": meta["cached"], "key": key}
        assert original_key is not None
        method = get_method(member.method_name)(**member.hparams)
        extra = {"heldout": split.heldout} if method.needs_heldout else {}

        def unlearn(_):  # only called on a cache miss: O_k is loaded (or trained) then
            original, _meta = _reference("original", split, setup, member.k, original_key)
            return method.unlearn(original, split.forget, split.retain, test=monitor_set(split), seed=member.k,
                                  cache_dir=setup.cache_dir, **extra)

        try:
            fresh = build_model(setup.model, split.data, **setup.model_kwargs).to(setup.device)
            model, meta = cached_train(fresh, unlearn, cache_dir=setup.cache_dir, key=key,
                                       name=f"{split.data.name}-unlearned-{member.method}")
            outputs = member_outputs(model, split)
        except Exception as exc:  # noqa: BLE001 - a diverging method is reported, the others go on
            return {"member": member, "error": f"{type(exc).__name__}: {exc}", "key": key}
        return {"member": member, "outputs": outputs, "seconds": meta["seconds"], "cached": meta["cached"],
                "key": key}
    finally:
        torch.set_num_threads(prev)


# ---------------------------------------------------------------------------------------------
# executors


class _Bars:
    """One tqdm bar per pool: models done / K, with ETA."""

    def __init__(self, members: list[Member], disable: bool):
        from tqdm.auto import tqdm

        totals: dict[str, int] = {}
        for m in members:
            totals[m.pool] = totals.get(m.pool, 0) + 1
        self.bars = {p: tqdm(total=n, desc=f"pool {p}", unit="model", disable=disable, dynamic_ncols=True,
                             position=i, leave=True) for i, (p, n) in enumerate(totals.items())}

    def done(self, result: dict) -> None:
        bar = self.bars[result["member"].pool]
        bar.update(1)
        if result.get("cached") is not None:
            bar.set_postfix(cached=result["cached"], refresh=False)

    def close(self) -> None:
        for b in self.bars.values():
            b.close()


def _run_serial(split, setup, members, keys, bars) -> list[dict]:
    out = []
    for m in members:
        r = run_member(split, setup, m, keys[m.ident], keys.get(("original", m.k, None)))
        bars.done(r)
        out.append(r)
    return out


def _run_ray(split, setup, members, keys, bars, address: str | None, num_cpus: int | None) -> tuple[list[dict], dict]:
    ray = require_ray(alternative="executor='serial' (--serial) runs without it")
    with ray_session(address, num_cpus=num_cpus or os.cpu_count(), argname="ray_address", local=(None, "local"),
                     ray=ray):
        remote = ray.remote(num_cpus=setup.threads, max_retries=0)(run_member)
        split_ref = ray.put(split)
        refs: dict = {}
        for m in members:  # references first: U_k waits for O_k's result (a Ray dependency)
            after = refs.get(("original", m.k, None)) if m.kind == "unlearned" else None
            refs[m.ident] = remote.remote(split_ref, setup, m, keys[m.ident], keys.get(("original", m.k, None)), after)
        results = gather(list(refs.values()), on_done=lambda _i, r: bars.done(r), ray=ray)  # in members' order
        res = ray.cluster_resources()
        info = {"address": address or "local", "cpus": res.get("CPU"),
                "nodes": len([n for n in ray.nodes() if n.get("Alive")])}
        return results, info


def run_pools(split, setup: PoolSetup, methods: dict[str, dict], k: int, *, executor: str = "ray",
              ray_address: str | None = None, num_cpus: int | None = None, progress: bool = True) -> dict:
    """Trains (or loads) every pool and returns their outputs.

    Args:
        split: an ``UnlearningSplit``.
        setup: what every model shares (:class:`PoolSetup`).
        methods: ``{registry name: hyper-parameters}``, one unlearned pool each.
        k: models per pool (K >= 2).
        executor: ``"ray"`` (one Ray task per model) or ``"serial"`` (in this process, in order).
        ray_address: None (a local Ray instance with ``num_cpus`` CPUs, default all cores;
            reused if Ray is already initialised), ``"auto"`` or ``"HOST:PORT"`` of a cluster.
        progress: tqdm bars, one per pool.

    Returns:
        ``{"pools": {pool: {set: {stat: (K, n) array}}}, "seconds": {pool: (K,) seconds},
        "cached": {pool: models loaded from the cache}, "errors": {pool: message},
        "executor": {...}, "wall_seconds": float}``; pools are "original", "retrained" and one
        per method (a method with an error has no entry in "pools").
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"pool: expected an int >= 2 (models per pool), got {k!r}")
    if executor not in ("ray", "serial"):
        raise ValueError(f"executor: expected 'ray' or 'serial', got {executor!r}")
    if isinstance(setup.threads, bool) or not isinstance(setup.threads, int) or setup.threads < 1:
        raise ValueError(f"threads: expected an int >= 1, got {setup.threads!r}")
    for name in methods:
        get_method(name)  # a misspelt name fails before any training
    members = pool_members(int(k), methods)
    keys = member_keys(members, split, setup)
    os.makedirs(setup.cache_dir, exist_ok=True)
    bars = _Bars(members, disable=not progress)
    t0 = time.perf_counter()
    try:
        if executor == "serial":
            results, info = _run_serial(split, setup, members, keys, bars), {"name": "serial"}
        else:
            results, info = _run_ray(split, setup, members, keys, bars, ray_address, num_cpus)
            info = {"name": "ray", **info}
    finally:
        bars.close()
    wall = time.perf_counter() - t0
    pools: dict = {}
    seconds: dict = {}
    cached: dict = {}
    errors: dict = {}
    for r in results:
        p = r["member"].pool
        if "error" in r:
            errors.setdefault(p, f"seed {r['member'].k}: {r['error']}")
    for r in results:
        p = r["member"].pool
        if p in errors:
            continue
        for s, stats in r["outputs"].items():
            for stat, v in stats.items():
                pools.setdefault(p, {}).setdefault(s, {}).setdefault(stat, []).append(v)
        seconds.setdefault(p, []).append(r["seconds"])
        cached[p] = cached.get(p, 0) + int(bool(r["cached"]))
    for p in pools:
        for s in pools[p]:
            for stat in pools[p][s]:
                pools[p][s][stat] = np.stack(pools[p][s][stat])
    for p, msg in errors.items():
        warnings.warn(f"{p} failed and is left out of the audit: {msg}", stacklevel=2)
    return {"pools": pools, "seconds": {p: np.asarray(v) for p, v in seconds.items()}, "cached": cached,
            "errors": errors, "executor": info, "wall_seconds": wall, "k": int(k),
            "members": len(members), "threads": setup.threads,
            "setup": {**dataclasses.asdict(setup), "train": setup.train.to_dict()}}
