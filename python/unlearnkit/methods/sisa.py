"""Layer: methods. SISA training (Sharded, Isolated, Sliced, Aggregated): exact unlearning by
construction. Bourtoule, Chandrasekaran, Choquette-Choo, Jia, Travers, Zhang, Lie & Papernot,
Machine Unlearning, IEEE S&P 2021.

SISA is a training mode, not an after-the-fact method:

    ens = train_sisa(build_model(...), x, y, shards=4, slices=4, epochs=30, seed=0)
    logits = predict(ens, x_test)                 # the aggregate of the S constituent models
    report = ens.unlearn(forget_indices)          # retrains only the shards that held them

The training set is split at random into S disjoint shards and each shard into R disjoint slices;
constituent model s trains on its shard incrementally (slice 0, then slices 0-1, ..., then 0..R-1),
and its state after every slice is checkpointed. Deleting samples retrains, for each shard that held
one, from the checkpoint before the earliest slice that held one, on the remaining samples only.

Invariants (tested): a shard that held no deleted sample is bit-identical before and after
``unlearn``; a retrained shard is bit-identical to training that shard from scratch on its
remaining samples (same assignment, same seeds), i.e. the ensemble is exactly the one SISA would
have trained without the deleted samples. (Bit-identity holds for deterministic kernels, e.g. on
a CPU; on a GPU it holds up to the kernels' own nondeterminism.)

The aggregate is an ``nn.Module`` with the models' contract: ``features(x)`` is the concatenation
of the constituents' features, (N, sum of their feature_dim), and ``head(z)`` splits it back and
aggregates the constituents' heads, so ``ens(x) == ens.head(ens.features(x))``. Its logits are log
probabilities: ``aggregation="mean"`` averages the constituents' softmax outputs; ``"vote"`` is the
paper's label majority vote, returned as log((votes + mean probability) / (S + 1)) (the arg-max is
the majority label, ties broken by the mean probability, and every logit stays finite).

Shards train one after another, or as Ray tasks with ``executor="ray"`` (equal to the serial run up to
float rounding: Ray workers run torch with their own thread count), submitted through
``unlearnkit.fanout.ray_map``, the one module that knows Ray; pass ``map_fn`` to use any other pool.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._validation import categorical, check_choice, check_positive_int, integers, log_uniform, param
from ..data.batches import BatchSource, TensorSource, as_source, concat_sources
from ..fanout import ray_map
from ..models.base import FeatureClassifier
from ..training import TrainConfig, fit
from .base import Method, register


def slice_epochs(epochs: int, slices: int) -> list[int]:
    """Epochs spent on each slice step, as the official code schedules them: with
    a = 2 E / (R + 1), slice step r (training on slices 0..r) gets floor((r + 1) a) - floor(r a)
    epochs, so that the samples of the whole shard are seen about E times in all."""
    a = 2 * epochs / (slices + 1)
    return [int((r + 1) * a) - int(r * a) for r in range(slices)]


def assign(n: int, shards: int, slices: int, seed: int) -> np.ndarray:
    """(n, 2) int64 array: the (shard, slice) of each sample; a seeded uniform random partition
    into ``shards`` near-equal shards, each into ``slices`` near-equal slices."""
    perm = np.random.default_rng(seed).permutation(n)
    out = np.empty((n, 2), dtype=np.int64)
    for s, part in enumerate(np.array_split(perm, shards)):
        for r, sl in enumerate(np.array_split(np.sort(part), slices)):
            out[sl] = (s, r)
    return out


def _slice_seed(seed: int, shard: int, slc: int) -> int:
    return (int(seed) * 1_000_003 + shard) * 1009 + slc


def _fresh_model(template: nn.Module, seed: int, shard: int) -> nn.Module:
    """A copy of ``template`` with every module that has ``reset_parameters`` re-initialised."""
    model = copy.deepcopy(template)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_slice_seed(seed, shard, 10_007))
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if reset is not None:
                reset()
    return model


def _contract(m: nn.Module) -> FeatureClassifier:
    """A constituent as the model contract (features / head) it honours: a copy of the model
    ``Method.unlearn`` handed over. An ``nn.ModuleList`` types its items as plain modules."""
    return cast(FeatureClassifier, m)


def _state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_shard(template: nn.Module, start_state: dict, shard: BatchSource | None, ends: Sequence[int],
                start: int, epochs: Sequence[int], config: dict, seeds: Sequence[int], precision: str = "fp32"
                ) -> list[dict]:
    """Trains one constituent from ``start_state`` over slice steps ``start..R-1``.

    Args:
        shard: the shard's remaining samples, slice after slice (a ``BatchSource``: in memory or
            streamed; None when the shard has none left).
        ends: (R,) cumulative sample counts: slice step r trains on the first ``ends[r]`` samples
            of ``shard`` (slices 0..r).
        epochs: epochs of each slice step (``slice_epochs``); config: TrainConfig fields but epochs.
        seeds: data-order seed of each slice step. precision: ``training.fit``'s.

    Returns:
        the state dict after each slice step from ``start`` (R - start of them). A pure function of
        its inputs (a Ray task).
    """
    model = copy.deepcopy(template)
    model.load_state_dict(start_state)
    out = []
    for r in range(start, len(ends)):
        k = int(ends[r])
        if epochs[r] > 0 and k > 0:
            assert shard is not None, "ends[r] > 0: the shard has samples left"
            data = shard if k == len(shard) else shard.subset(torch.arange(k))
            fit(model, data, None, TrainConfig(epochs=epochs[r], **config), seed=seeds[r], precision=precision)
        out.append(_state(model))
    return out


def _serial_map(fn: Callable, tasks: list[tuple]) -> list:
    return [fn(*t) for t in tasks]


def _ray_map(fn: Callable, tasks: list[tuple]) -> list:
    """One Ray task (one CPU) per shard, through ``unlearnkit.fanout``: a running Ray session is
    reused, else a local one is started for the call and stopped after it."""
    return ray_map(fn, tasks, num_cpus=1)


EXECUTORS = {"serial": _serial_map, "ray": _ray_map}


class SisaEnsemble(nn.Module):
    """S constituent models trained by SISA, aggregated (see the module docstring).

    Attributes:
        constituents: the S models (``nn.ModuleList``).
        data: the training set, a ``BatchSource`` (built from ``x, y`` tensors, or ``x`` a Dataset /
            DataLoader / source with ``y=None``: then streamed, each shard read in minibatches);
            training-set indices are positions in it.
        assignment: (n, 2) (shard, slice) of each training sample; ``alive``: (n,) bool, False once deleted.
        checkpoints: ``checkpoints[s][r]`` is shard s's state before slice step r (r = 0: the
            initialisation) and ``checkpoints[s][R]`` its final state.
        last_unlearn: what the latest ``unlearn`` did (shards retrained, from which slice, seconds).
    """

    def __init__(self, template: nn.Module, x, y: torch.Tensor | None, assignment: np.ndarray, *,
                 epochs: Sequence[int], config: dict, seed: int, aggregation: str = "mean",
                 precision: str = "fp32"):
        super().__init__()
        self.aggregation = check_choice(aggregation, "aggregation", ("mean", "vote"))
        self.shards = int(assignment[:, 0].max()) + 1
        self.slices = int(assignment[:, 1].max()) + 1
        self.constituents = nn.ModuleList([_fresh_model(template, seed, s) for s in range(self.shards)])
        self.num_classes = getattr(template, "num_classes", None)
        dims: list[int] = []
        for m in self.constituents:
            d = getattr(m, "feature_dim", None)
            if d is None:
                raise TypeError("model: expected a model with a feature_dim attribute (unlearnkit.models), "
                                f"got {type(template).__name__}")
            dims.append(d)
        self.feature_dims = dims
        self.feature_dim = int(sum(dims))
        self._template = copy.deepcopy(template)
        self.data = as_source((x, y) if y is not None else x, "x")  # the training set: positions = indices
        self.assignment = assignment
        self.alive = np.ones(len(self.data), dtype=bool)
        self.epochs, self.config, self.seed, self.precision = list(epochs), dict(config), int(seed), precision
        self.checkpoints: list[list[dict]] = [[_state(m)] for m in self.constituents]
        self.last_unlearn: dict = {}

    # --- the models' contract -----------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, sum of the constituents' feature_dim): their features side by side."""
        return torch.cat([_contract(m).features(x) for m in self.constituents], dim=1)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """(N, feature_dim) -> (N, num_classes) aggregated log-probabilities."""
        parts = torch.split(z, self.feature_dims, dim=1)
        probs = torch.stack([F.softmax(_contract(m).head(p), dim=1) for m, p in zip(self.constituents, parts)])
        mean = probs.mean(0)
        if self.aggregation == "mean":
            return mean.clamp_min(1e-12).log()
        votes = F.one_hot(probs.argmax(2), probs.shape[2]).sum(0).to(mean.dtype)
        return ((votes + mean) / (len(self.constituents) + 1)).log()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    # --- SISA bookkeeping ---------------------------------------------------------------------
    def shard_data(self, shard: int) -> tuple[BatchSource | None, list[int]]:
        """The remaining samples of ``shard``, slice after slice (each in ascending training-set
        index), as a source over the training set (None if none remain), and the cumulative count
        at the end of each slice."""
        parts, ends = [], []
        for r in range(self.slices):
            parts.append(np.flatnonzero((self.assignment[:, 0] == shard) & (self.assignment[:, 1] == r) & self.alive))
            ends.append(int(sum(len(p) for p in parts)))
        idx = np.concatenate(parts)
        return (self.data.subset(torch.from_numpy(idx)) if len(idx) else None), ends

    def _tasks(self, shard_starts: dict[int, int]) -> list[tuple]:
        tasks = []
        for s, start in shard_starts.items():
            shard, ends = self.shard_data(s)
            seeds = [_slice_seed(self.seed, s, r) for r in range(self.slices)]
            tasks.append((self._template, self.checkpoints[s][start], shard, ends, start, self.epochs, self.config,
                          seeds, self.precision))
        return tasks

    def _train(self, shard_starts: dict[int, int], map_fn: Callable) -> None:
        results = map_fn(train_shard, self._tasks(shard_starts))
        for (s, start), states in zip(shard_starts.items(), results):
            self.checkpoints[s] = self.checkpoints[s][:start + 1] + list(states)
            self.constituents[s].load_state_dict(self.checkpoints[s][-1])
        self.eval()

    def locate(self, x, *, batch_size: int = 512) -> np.ndarray:
        """Training-set indices of the (alive) samples equal, byte for byte, to the rows of ``x``
        (a tensor, or any Dataset / DataLoader / ``BatchSource``: both it and the training set are
        read in minibatches, only the rows' 16-byte digests are kept). Raises ValueError for a row
        that is not in the training set."""
        def keys(source: BatchSource):
            for b in source.batches(batch_size, shuffle=False):
                for i, row in zip(b.idx.tolist(), b.x.cpu()):
                    yield i, hashlib.blake2b(row.contiguous().numpy().tobytes(), digest_size=16).digest()
        table: dict[bytes, list[int]] = {}
        alive = torch.from_numpy(np.flatnonzero(self.alive))
        if len(alive):
            for j, k in keys(self.data.subset(alive)):
                table.setdefault(k, []).append(int(alive[j]))
        query = x if not isinstance(x, torch.Tensor) else TensorSource(x.cpu(), torch.zeros(len(x), dtype=torch.long),
                                                                       name="forget")
        out = []
        for j, k in keys(as_source(query, "forget")):
            hits = table.get(k)
            if not hits:
                raise ValueError(f"forget: expected samples of the SISA training set, got row {j} which is not in it")
            out.append(hits.pop(0))
        return np.asarray(out, dtype=np.int64)

    def unlearn(self, indices, *, executor: str = "serial", map_fn: Callable | None = None) -> dict:
        """Deletes training samples ``indices`` exactly: each shard holding one is retrained from its
        checkpoint before the earliest slice holding one, on its remaining samples; the others are
        untouched. Returns (and keeps in ``last_unlearn``) ``{"shards": [...], "from_slice": {...},
        "seconds": float, "retrained_samples": int}``."""
        idx = np.unique(np.asarray(indices, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.alive)):
            raise ValueError(f"indices: expected training-set indices in [0, {len(self.alive)}), "
                             f"got values from {idx.min()} to {idx.max()}")
        idx = idx[self.alive[idx]]
        t0 = time.perf_counter()
        starts: dict[int, int] = {}
        for s, r in self.assignment[idx]:
            starts[int(s)] = min(starts.get(int(s), self.slices), int(r))
        self.alive[idx] = False
        starts = dict(sorted(starts.items()))
        if starts:
            self._train(starts, map_fn or EXECUTORS[check_choice(executor, "executor", EXECUTORS)])
        n_retrained = sum(int(((self.assignment[:, 0] == s) & self.alive).sum()) for s in starts)
        self.last_unlearn = {"shards": list(starts), "from_slice": starts, "seconds": time.perf_counter() - t0,
                             "retrained_samples": n_retrained}
        return self.last_unlearn


def train_sisa(model: nn.Module, x, y: torch.Tensor | None = None, *, shards: int = 4, slices: int = 4,
               epochs: int = 30, batch_size: int = 64, lr: float = 0.05, momentum: float = 0.9,
               weight_decay: float = 5e-4, seed: int = 0, aggregation: str = "mean",
               assignment: np.ndarray | None = None, executor: str = "serial",
               map_fn: Callable | None = None, precision: str = "fp32") -> SisaEnsemble:
    """Trains a SISA ensemble of copies of ``model`` (re-initialised; its weights are not used).

    Args:
        model: the architecture of each constituent (``unlearnkit.models``: ``features``/``head``/``feature_dim``).
        x: (n, C, H, W) training images in [0, 1] with y: (n,) int64 labels; or, with ``y=None``, any
            Dataset / DataLoader / ``BatchSource`` (streamed: each shard reads its samples in minibatches).
        shards, slices: S and R. epochs: E, the passes over each shard (spread over the slice steps
            by ``slice_epochs``). batch_size, lr, momentum, weight_decay: the SGD of ``training.fit``
            (a cosine schedule within each slice step).
        seed: fixes the assignment, initialisations and data orders.
        assignment: (n, 2) (shard, slice) per sample instead of the seeded random one.
        executor: "serial" or "ray" (one task per shard); map_fn: any ``map_fn(fn, tasks) -> list``.
        precision: each constituent's training precision (``training.fit``'s).
    """
    shards = check_positive_int(shards, "shards")
    slices = check_positive_int(slices, "slices")
    if y is not None:
        if len(x) != len(y):
            raise ValueError(f"y: expected as many labels as images ({len(x)}), got {len(y)}")
        data = as_source((x.cpu(), y.cpu()), "x")
    else:
        data = as_source(x, "x")
    n = len(data)
    if assignment is None:
        if n < shards * slices:
            raise ValueError(f"shards, slices: expected at most {n} slices in all (one sample each), "
                             f"got {shards} x {slices}")
        assignment = assign(n, shards, slices, seed)
    else:
        assignment = np.asarray(assignment, dtype=np.int64)
        if assignment.shape != (n, 2):
            raise ValueError(f"assignment: expected shape ({n}, 2), got {assignment.shape}")
    config = dict(batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay)
    epochs_per_slice = slice_epochs(epochs, int(assignment[:, 1].max()) + 1)
    ens = SisaEnsemble(model, data, None, assignment, epochs=epochs_per_slice, config=config, seed=seed,
                       aggregation=aggregation, precision=precision)
    ens._train({s: 0 for s in range(ens.shards)}, map_fn or EXECUTORS[check_choice(executor, "executor", EXECUTORS)])
    return ens


@dataclass(frozen=True)
class SisaParams:
    """shards, slices: S and R (the paper sweeps both; 4 x 4 is ours); epochs, batch_size, lr,
    momentum, weight_decay: each constituent's training (set them to the dataset's recipe);
    aggregation: "mean" (softmax average) or "vote" (the paper's majority vote); executor: "serial"
    or "ray"."""

    shards: int = param(4, ge=1, space=categorical(2, 4, 8, 16))
    slices: int = param(4, ge=1, space=integers(1, 8))
    epochs: int = param(30, ge=0)
    batch_size: int = param(64, ge=1)
    lr: float = param(0.05, gt=0, space=log_uniform(1e-3, 0.5))
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-4, ge=0)
    aggregation: str = param("mean", choices=("mean", "vote"))
    executor: str = param("serial", choices=("serial", "ray"))


@register
class Sisa(Method[SisaParams]):
    """SISA behind the ``Method`` interface.

    Given a ``SisaEnsemble`` (trained with ``train_sisa``), ``unlearn`` deletes the forget samples
    (located by content among its training samples) exactly and returns the ensemble; only the
    affected shards are retrained. Given a plain model (as the bench passes the original), SISA has
    to be the training mode first: the ensemble is trained on retain + forget with these
    hyper-parameters, then the forget samples are deleted, so the time measured includes training
    (``last_unlearn["seconds"]`` on the result is the deletion alone). The result is a
    ``SisaEnsemble``: ``features``/``head`` as every model, aggregated.
    """

    name = "sisa"
    paper = "Bourtoule et al., Machine Unlearning, IEEE S&P 2021"
    Params = SisaParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        if isinstance(model, SisaEnsemble):
            ens = model
            idx = ens.locate(data.forget)
        else:
            train = concat_sources([data.retain, data.forget], name="x")  # positions: retain, then forget
            t0 = time.perf_counter()
            ens = train_sisa(model, train, shards=p.shards, slices=p.slices, epochs=p.epochs,
                             batch_size=p.batch_size, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay,
                             seed=ctx.seed, aggregation=p.aggregation, executor=p.executor,
                             precision=ctx.amp.precision)
            ctx.log("train", 1, 1, seconds=time.perf_counter() - t0)
            idx = np.arange(len(data.retain), len(train))
        report = ens.unlearn(idx, executor=p.executor)
        ctx.log("unlearn", 1, 1, seconds=report["seconds"], shards=len(report["shards"]))
        return ens.to(ctx.device)
