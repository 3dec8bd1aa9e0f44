"""Session fixtures the test layers share (loaded by ``conftest.py`` as a pytest plugin, after it has
chosen ``TRITON_INTERPRET``): trained reference models, the digits split, a local Ray and recipe files.

Models are trained once per test session on first use; a fixture nobody requests trains nothing.
"""

from __future__ import annotations

import os

import pytest

# Everything else is imported inside the fixtures: this plugin loads with conftest.py, before any test
# module, and must neither import torch (CUDA would initialise before the tests choose their devices)
# nor fail the whole session when the package does not import.

# The Fashion-MNIST subset the method-behaviour tests share, and how its reference models are
# trained (the fashion-mnist recipe's model on a tenth of the images, more epochs, batches of 128,
# lr 0.05): real data, about a minute of training on 2 cores, cached on disk when UNLEARNKIT_CACHE is set.
FASHION_N_TRAIN = 6000
FASHION_EPOCHS = 8


@pytest.fixture(scope="session")
def digits_split():
    """Digits with random forgetting of 10% of the training images (seed 0)."""
    from unlearnkit.data import load_digits, make_split

    return make_split(load_digits(), forget="random", fraction=0.1, seed=0)


@pytest.fixture(scope="session")
def digits_models(digits_split):
    """(split, original, gold) on ``digits_split``, trained with the digits recipe (seed 0): the
    original on every training image, the gold model on the retained ones."""
    import torch

    from unlearnkit.bench.recipes import dataset_recipe
    from unlearnkit.models import build_model
    from unlearnkit.training import TrainConfig, fit

    split, seed = digits_split, 0
    data = split.data
    recipe = dataset_recipe("digits")
    cfg = TrainConfig(**recipe["train"])
    models = []
    for idx in (torch.arange(len(data.y_train)), torch.from_numpy(split.retain_idx)):
        torch.manual_seed(seed)
        m = build_model(recipe["model"], data, **recipe.get("model_kwargs", {}))
        models.append(fit(m, data.x_train[idx], data.y_train[idx], cfg, seed=seed))
    return split, models[0], models[1]


def _train_fashion(cache_dir, seed, fraction, heldout_fraction, n_train, epochs):
    import filelock
    import numpy as np
    import torch

    from unlearnkit.checkpoints import cache_key, cached_train
    from unlearnkit.data import load_fashion_mnist, make_split
    from unlearnkit.data.types import _make
    from unlearnkit.models import build_model
    from unlearnkit.training import TrainConfig, fit

    full = load_fashion_mnist()
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.05)
    keep = torch.from_numpy(np.sort(np.random.default_rng(0).permutation(len(full.y_train))[:n_train]))
    data = _make(f"fashion-mnist-{n_train}", full.x_train[keep], full.y_train[keep], full.x_test, full.y_test, full.classes)
    split = make_split(data, forget="random", fraction=fraction, seed=seed, heldout_fraction=heldout_fraction)
    models = []
    for kind, idx in (("original", np.arange(n_train)), ("gold", split.retain_idx)):
        torch.manual_seed(seed)
        model = build_model("small-cnn", data, channels=(16, 32))
        x, y = data.x_train[torch.from_numpy(idx)], data.y_train[torch.from_numpy(idx)]
        key = cache_key(kind=kind, data=data.fingerprint(), idx=cache_key(idx=idx.tolist()),
                        train=cfg.to_dict(), model="small-cnn-16-32", seed=seed)
        # One process trains, the others (pytest-xdist workers sharing cache_dir) wait and load it.
        with filelock.FileLock(os.path.join(cache_dir, f"{key}.lock")):
            model, _ = cached_train(model, lambda m: fit(m, x, y, cfg, seed=seed), cache_dir=cache_dir,
                                    key=key, name=f"test-{kind}")
        models.append(model)
    return (split, *models)


def _session_cache_dir(tmp_path_factory) -> str:
    """Where this test session keeps the reference models it trains: ``$UNLEARNKIT_TEST_MODELS`` when
    set (``make test`` points both its passes at one folder: the second, under two threads, loads the
    models the first trained under one), else ``$UNLEARNKIT_CACHE`` when set; else a folder of this
    session that its pytest-xdist workers share (the parent of each worker's base temp, which is this
    session's alone), so a model is trained once per session, not once per worker; a serial session's
    own base temp otherwise."""
    for var in ("UNLEARNKIT_TEST_MODELS", "UNLEARNKIT_CACHE"):
        if os.environ.get(var):
            return os.environ[var]
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / "reference-models"
    path.mkdir(exist_ok=True)
    return str(path)


@pytest.fixture(scope="session")
def fashion_models(tmp_path_factory):
    """A function ``(seed=0, fraction=0.1, heldout_fraction=0.2, n_train=6000, epochs=8)`` returning
    (split, original, gold) on an ``n_train``-image Fashion-MNIST subset with random forgetting and
    ``heldout_fraction`` of the test split held out (D_twin for TMU, unseen data for DLFD); each
    distinct set of arguments is trained once per session. Fewer images and more epochs give an
    original model that memorises its forget set (what membership-inference-driven methods such as
    DLFD need to see)."""
    made: dict = {}
    cache_dir = _session_cache_dir(tmp_path_factory)

    def get(seed: int = 0, fraction: float = 0.1, heldout_fraction: float = 0.2, n_train: int = FASHION_N_TRAIN,
            epochs: int = FASHION_EPOCHS):
        key = (seed, fraction, heldout_fraction, n_train, epochs)
        if key not in made:
            made[key] = _train_fashion(cache_dir, *key)
        return made[key]

    return get


# --- the method tests' runs: the per-method files (tests/methods/test_<method>.py) and the files of
# tests across methods (test_recipes_digits.py, test_muda_dlfd.py) look at the same runs; each module
# names the one it uses ``run`` (a one-line module fixture returning one of these).

@pytest.fixture(scope="session")
def class_split(digits_models):
    """The digits split with class 3 forgotten."""
    from unlearnkit.data import make_split

    split, _, _ = digits_models
    return make_split(split.data, forget="class", forget_class=3, seed=0)


@pytest.fixture(scope="session")
def digits_recipe_runs(digits_models):
    """A function ``run(name, **extra)`` returning (split, original, gold, unlearned, events) for
    ``name`` with its digits recipe; each run is made once per session so several tests (in several
    files) can look at it."""
    from unlearnkit.bench.recipes import method_recipe
    from unlearnkit.methods import get_method

    runs: dict = {}

    def get(name, **extra):
        key = (name, tuple(sorted(extra.items())))
        if key not in runs:
            split, original, gold = digits_models
            events = []
            out = get_method(name)(**{**method_recipe("digits", name), **extra}).unlearn(
                original, split.forget, split.retain, test=split.val, seed=0, callbacks=[events.append])
            runs[key] = (split, original, gold, out, events)
        return runs[key]

    return get


@pytest.fixture(scope="module")
def digits_scenario_runs(digits_models):
    """A function ``run(name, split=None, retain_n=None, scenario=None, **extra)`` returning (split,
    original, gold, unlearned) for ``name`` with its digits recipe for ``scenario`` (each run made once
    per module); ``retain_n``: hand the method only that many retain samples (to keep a slow method's
    test short)."""
    from unlearnkit.bench.recipes import method_recipe
    from unlearnkit.methods import get_method

    runs: dict = {}

    def get(name, split=None, retain_n=None, scenario=None, **extra):
        key = (name, split is not None, retain_n, scenario, tuple(sorted(extra.items())))
        if key not in runs:
            s, original, gold = digits_models
            split = split or s
            x, y = split.retain.tensors
            retain = (x[:retain_n], y[:retain_n]) if retain_n else split.retain
            out = get_method(name)(**{**method_recipe("digits", name, scenario=scenario), **extra}).unlearn(
                original, split.forget, retain, seed=0)
            runs[key] = (split, original, gold, out)
        return runs[key]

    return get


# MUDA's and DLFD's behaviour subset: fewer images, more epochs, so the original memorises its forget
# set (forget acc ~0.98 vs the gold model's ~0.83) as the large models of the papers do.
MEMORISING_SUBSET = dict(n_train=3000, epochs=25)


@pytest.fixture(scope="session")
def subset_recipe_runs(request):
    """A function ``run(name)`` returning (split, original, gold, unlearned, events) for ``name`` with
    its recipe on the Fashion-MNIST subset ``MEMORISING_SUBSET`` (on digits without Fashion-MNIST);
    each run is made once per session."""
    from unlearnkit.bench.recipes import method_recipe
    from unlearnkit.data import fashion_mnist_available
    from unlearnkit.methods import METHODS

    fashion = fashion_mnist_available()
    dataset = "fashion-mnist" if fashion else "digits"
    models = (request.getfixturevalue("fashion_models")(**MEMORISING_SUBSET) if fashion
              else request.getfixturevalue("digits_models"))
    runs: dict = {}

    def get(name):
        if name not in runs:
            split, original, gold = models
            method = METHODS[name](**method_recipe(dataset, name))
            events = []
            # validation data only, as the runner does: the test split is what the result is scored on
            out = method.unlearn(original, split.forget, split.retain, test=split.val, seed=0,
                                 callbacks=[events.append])
            runs[name] = (split, original, gold, out, events)
        return runs[name]

    return get


@pytest.fixture(scope="module")
def local_ray():
    """A local 2-CPU Ray for the module (started unless one is running; shut down after the module)."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def recipes_file(tmp_path_factory):
    """A function writing TOML recipes text to a file ``name`` in a fresh directory and returning its
    path (a str)."""

    def write(text: str, name: str = "recipes.toml") -> str:
        path = tmp_path_factory.mktemp("recipes") / name
        path.write_text(text)
        return str(path)

    return write
