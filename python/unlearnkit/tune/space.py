"""Layer: tune. Search spaces: from each method's ``Params`` field metadata to Ray Tune (and, via
Ray's Optuna searcher, Optuna) distributions, and back from a sampled point to hyper-parameters.

The range of a hyper-parameter is declared once, next to its default, with
``unlearnkit._validation.param(..., space=log_uniform(...))``; this module only translates it.
Invariants: every translated distribution has the declared bounds (both ends inclusive for
integers: Ray's ``randint`` upper bound is exclusive, so ``high + 1`` is passed); a sampled point
converted by ``to_hparams`` passes the field's own constraints (``check_params``).
"""

from __future__ import annotations

from .._validation import Space, categorical, check_params, check_scenario, search_space
from ..methods import get_method


def ray_domain(space: Space):
    """One ``Space`` as a Ray Tune domain (``tune.loguniform``, ``tune.uniform``, ``tune.randint``/
    ``tune.lograndint`` with the upper end included, ``tune.choice``)."""
    from ray import tune

    if not isinstance(space, Space):
        raise TypeError(f"space: expected an unlearnkit._validation.Space, got {type(space).__name__}")
    if space.kind == "choice":
        return tune.choice(list(space.choices))
    low, high = space.low, space.high
    assert low is not None and high is not None  # Space checks a range has both ends
    if space.kind == "log":
        return tune.loguniform(low, high)
    if space.kind == "float":
        return tune.uniform(low, high)
    # kind "int"
    lo, hi = int(low), int(high) + 1  # Ray's integer upper bound is exclusive
    return tune.lograndint(lo, hi) if space.log else tune.randint(lo, hi)


def method_space(method: str, scenario: str | None = None) -> dict[str, Space]:
    """``{field: Space}`` of ``method``'s tuned hyper-parameters (empty: nothing to tune).

    With a whole-class ``scenario`` ("class-<label>"), ``stop`` loses its "val-match" choice: the
    held-out rule refuses whole-class forgetting, so every trial drawing it would fail (on
    fashion-mnist-10k class-0, 2026-12-07: 21 of 144 trials, 1-3 per method)."""
    space = search_space(get_method(method).Params)
    stop = space.get("stop")
    if (scenario is not None and stop is not None and stop.kind == "choice"
            and check_scenario(scenario, "scenario", parsed=True)["forget"] == "class"):
        space["stop"] = categorical(*[c for c in stop.choices if c != "val-match"])
    return space


def ray_space(method: str, scenario: str | None = None) -> dict:
    """``{field: Ray Tune domain}`` for every tuned hyper-parameter of ``method`` (``scenario``: see
    :func:`method_space`)."""
    return {name: ray_domain(s) for name, s in method_space(method, scenario).items()}


def to_hparams(method: str, config: dict) -> dict:
    """A sampled point (Ray config; numpy scalars allowed) as validated hyper-parameters of ``method``:
    integers stay ints, floats become floats; raises like ``Method(**config)`` on a bad value."""
    clean = {}
    for k, v in config.items():
        clean[k] = v.item() if hasattr(v, "item") else v
    return check_params(get_method(method).Params, clean, prefix=f"{method}.")


def start_point(method: str, recipe: dict, scenario: str | None = None) -> dict:
    """The hand-made recipe (else the paper's default) of each tuned field, clipped into its range
    (a choice the space lacks becomes its first choice; a numeric field left at a ``None`` default,
    "chosen by the method", such as DLFD's ``epsilon``, starts at its range's middle, geometric on a
    log scale): the first point the search evaluates, so the tuned recipe is never worse on the
    tuning seed's objective than the one it replaces."""
    params = get_method(method).Params()
    point = {}
    for name, s in method_space(method, scenario).items():
        v = recipe.get(name, getattr(params, name))
        if s.kind == "choice":
            v = v if v in s.choices else s.choices[0]
        else:
            assert s.low is not None and s.high is not None  # Space checks a range has both ends
            if v is None:
                v = (s.low * s.high) ** 0.5 if s.kind == "log" or s.log else (s.low + s.high) / 2
            v = min(max(v, s.low), s.high)
            v = int(round(v)) if s.kind == "int" else float(v)
        point[name] = v
    return point
