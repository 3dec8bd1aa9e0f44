"""Inputs users get wrong, fed to every public entry point: each must fail with a clear error that
names the argument (ValueError/TypeError, or FileNotFoundError for paths), and leave no partial
output file. The case count is printed by `pytest -q tests/test_bad_input.py` (one test per case)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from unlearnkit import metrics as M
from unlearnkit.checkpoints import load_checkpoint
from unlearnkit.data import load_digits, make_split
from unlearnkit.data.forget import UnlearningSplit
from unlearnkit.methods import get_method
from unlearnkit.models import build_model

P = np.full((4, 3), 1 / 3)
Y = np.array([0, 1, 2, 0])
NAN = np.array([0.0, np.nan, 1.0, 2.0])

CASES = [
    # (id, callable, exception, message must match)
    ("nmi-length", lambda: M.normalized_mutual_info_score([0, 1, 2], [0, 1]), ValueError, "labels_pred.*length"),
    ("nmi-2d", lambda: M.normalized_mutual_info_score(np.zeros((2, 2)), [0, 1]), ValueError, "labels_true.*1-D"),
    ("nmi-nan", lambda: M.normalized_mutual_info_score(NAN, [0, 1, 2, 3]), ValueError, "labels_true.*finite"),
    ("nmi-fraction", lambda: M.normalized_mutual_info_score([0.5, 1], [0, 1]), ValueError, "labels_true.*integer"),
    ("nmi-strings", lambda: M.normalized_mutual_info_score(["a", "b"], [0, 1]), TypeError, "labels_true"),
    ("nmi-average", lambda: M.normalized_mutual_info_score([0, 1], [0, 1], average_method="median"), ValueError,
     "average_method"),
    ("nmi-none", lambda: M.normalized_mutual_info_score(None, [0, 1]), TypeError, "labels_true"),
    ("accuracy-length", lambda: M.accuracy(Y[:3], P), ValueError, "logits"),
    ("accuracy-nan", lambda: M.accuracy(Y, P * np.nan), ValueError, "logits.*finite"),
    ("accuracy-int-logits", lambda: M.accuracy(Y, np.ones((4, 3), int)), TypeError, "logits"),
    ("softmax-1d", lambda: M.softmax(np.ones(3)), ValueError, "logits.*2-D"),
    ("confidence-label-range", lambda: M.confidence(P, [0, 1, 2, 3]), ValueError, "labels.*\\[0, 3\\)"),
    ("confidence-negative-probs", lambda: M.confidence(-P, Y), ValueError, "probs"),
    ("entropy-inf", lambda: M.entropy(P * np.inf), ValueError, "probs"),
    ("m-entropy-length", lambda: M.modified_entropy(P, Y[:2]), ValueError, "labels"),
    ("attack-kind", lambda: M.membership_attack([1.0], [0.0], [1.0], attack="forest"), ValueError, "attack"),
    ("attack-empty", lambda: M.membership_attack([], [0.0], [1.0]), ValueError, "members"),
    ("attack-nan", lambda: M.membership_attack(NAN, [0.0, 1.0], [1.0]), ValueError, "members.*finite"),
    ("forget-vs-test-tiny", lambda: M.mia_forget_vs_test([1.0], [0.0, 1.0]), ValueError, "at least 2"),
    ("act-dist-shape", lambda: M.activation_distance(P, P[:2]), ValueError, "probs_b"),
    ("js-shape", lambda: M.js_divergence(P, P[:, :2]), ValueError, "probs_b"),
    ("nomus-range", lambda: M.nomus(1.5, 0.5), ValueError, "test_accuracy"),
    ("split-kind", lambda: make_split(load_digits(), forget="everything"), ValueError, "forget"),
    ("split-fraction-zero", lambda: make_split(load_digits(), fraction=0.0), ValueError, "fraction"),
    ("split-fraction-str", lambda: make_split(load_digits(), fraction="ten"), TypeError, "fraction"),
    ("split-class-missing", lambda: make_split(load_digits(), forget="class", forget_class=10), ValueError,
     "forget_class"),
    ("split-subclass-ungrouped", lambda: make_split(load_digits(), forget="subclass", forget_class=1), ValueError,
     "forget"),
    ("split-heldout", lambda: make_split(load_digits(), heldout_fraction=1.0), ValueError, "heldout_fraction"),
    ("forget-not-in-train", lambda: UnlearningSplit(load_digits(), np.array([5000]), np.arange(1437), "x", 0),
     ValueError, "forget_idx.*part of the training set"),
    ("forget-float-idx", lambda: UnlearningSplit(load_digits(), np.array([1.0]), np.arange(1437), "x", 0),
     TypeError, "forget_idx"),
    ("forget-duplicates", lambda: UnlearningSplit(load_digits(), np.array([0, 0]), np.arange(1, 1437), "x", 0),
     ValueError, "forget_idx.*once"),
    ("dataset-name", lambda: __import__("unlearnkit.data", fromlist=["x"]).load_dataset("imagenet"), ValueError,
     "dataset"),
    ("model-name", lambda: build_model("vit", load_digits()), ValueError, "model"),
    ("method-name", lambda: get_method("magic"), ValueError, "method"),
    ("method-hparam", lambda: get_method("neggrad")(learning_rate=1), TypeError, "hparams"),
    ("method-params-type", lambda: get_method("neggrad")(params=object()), TypeError, "params"),
]


@pytest.mark.parametrize("fn, exc, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_naming_the_argument(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def _method_cases(digits_models):
    split, original, _ = digits_models
    x, y = split.forget.tensors
    xr, yr = split.retain.tensors
    m = get_method("finetune")(epochs=1)
    return [
        ("labels-outside-classes", lambda: m.unlearn(original, (x, y + 10), split.retain), ValueError,
         "forget.*labels"),
        ("nan-images", lambda: m.unlearn(original, (x.clone().fill_(float("nan")), y), split.retain), ValueError,
         "forget.*finite"),
        ("inf-retain", lambda: m.unlearn(original, split.forget, (xr.clone().fill_(float("inf")), yr)), ValueError,
         "retain.*finite"),
        ("length-mismatch", lambda: m.unlearn(original, (x, y[:-1]), split.retain), ValueError, "forget"),
        ("float-labels", lambda: m.unlearn(original, (x, y.float()), split.retain), TypeError, "forget.*integer"),
        ("empty-forget", lambda: m.unlearn(original, (x[:0], y[:0]), split.retain), ValueError, "forget.*non-empty"),
        ("shape-mismatch", lambda: m.unlearn(original, (x[:, :, :4], y), split.retain), ValueError, "retain.*shape"),
        ("not-a-dataset", lambda: m.unlearn(original, [1, 2, 3], split.retain), TypeError, "forget"),
        ("not-a-model", lambda: m.unlearn(lambda x: x, split.forget, split.retain), TypeError, "model"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_method_bad_input(case, digits_models):
    name, fn, exc, match = _method_cases(digits_models)[case]
    with pytest.raises(exc, match=match):
        fn()


def test_corrupt_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80\x04 truncated")
    with pytest.raises(ValueError, match="checkpoint: .*model.pt"):
        load_checkpoint(build_model("small-cnn", load_digits()), path)
    torch.save({"state_dict": {"bogus": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="checkpoint: .*not a valid checkpoint for SmallCNN"):
        load_checkpoint(build_model("small-cnn", load_digits()), path)


CLI_CASES = [
    ("scenario", ["bench", "--scenario", "random-0"], "scenario"),
    ("scenario-text", ["bench", "--scenario", "forget-everything"], "scenario"),
    ("dataset", ["bench", "--dataset", "mnist-10"], "dataset"),
    ("method", ["bench", "--methods", "finetune,oops"], "method"),
    ("set-syntax", ["bench", "--set", "neggrad-lr"], "--set"),
    ("set-field", ["bench", "--methods", "neggrad", "--set", "neggrad.speed=3"],
     "neggrad.speed: not a hyper-parameter"),
    ("seeds", ["bench", "--seeds", "x"], "seeds"),
]


@pytest.mark.parametrize("args, match", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_arguments(args, match, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "UNLEARNKIT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "unlearnkit.cli", *args, "--quiet", "--no-plots", "--no-features",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert match in proc.stderr
    assert not (out / "results.json").exists()


def test_cli_unwritable_out_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = subprocess.run([sys.executable, "-m", "unlearnkit.cli", "demo", "--quick", "--dataset", "digits", "--quiet",
                           "--out", str(blocker / "results")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "UNLEARNKIT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2 and "a-file" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# Issue 16: bench arguments that used to train first and fail (or not fail) later. Run in-process
# through `unlearnkit.cli.main` (the exit status and stderr are the command's): each must exit with
# 2 and `unlearnkit: error: <argument>: expected ..., got ...` before any data is loaded, any model
# trained or the --out folder created.

BENCH_CASES = [
    ("seeds-0", ["--seeds", "0"], r"--seeds: expected an int >= 1 .*got 0"),
    ("seeds-negative", ["--seeds", "-1"], r"--seeds: expected an int >= 1 .*got -1"),
    ("device-tpu", ["--device", "tpu"], r"--device: expected a torch device such as 'cpu', 'cuda'.*got 'tpu'"),
    ("device-gpu-index", ["--device", "cuda:99"],
     r"--device: expected (a GPU index below|an available device).*cuda:99"),
    ("set-unknown-method", ["--methods", "finetune", "--set", "foo.lr=0.1"],
     r"--set: expected overrides of the methods of this run \['finetune'\], got 'foo'"),
    ("set-method-not-in-run", ["--methods", "finetune", "--set", "neggrad.lr=0.1"], r"--set: .* got 'neggrad'"),
    ("set-negative-epochs", ["--methods", "finetune", "--set", "finetune.epochs=-3"],
     r"finetune\.epochs: expected an int >= 0, got -3"),
    ("set-fractional-epochs", ["--methods", "finetune", "--set", "finetune.epochs=2.5"],
     r"finetune\.epochs: expected an int >= 0, got float 2\.5"),
    ("set-bare-string-checked", ["--methods", "dlfd", "--set", "dlfd.layer=nowhere"],
     r"dlfd\.layer: expected one of \['logits', 'features'\], got 'nowhere'"),
    ("set-twice", ["--methods", "finetune", "--set", "finetune.lr=0.1", "--set", "finetune.lr=0.2"],
     r"--set: expected each METHOD\.FIELD once, got finetune\.lr twice"),
    ("set-empty-value", ["--methods", "finetune", "--set", "finetune.lr="], r"--set: expected METHOD\.FIELD=VALUE"),
    ("methods-duplicate", ["--methods", "finetune,finetune"],
     r"--methods: expected each method once, got 'finetune' 2 times"),
    ("methods-empty", ["--methods", ""], r"--methods: expected comma-separated method names or 'all'.*got ''"),
    ("methods-empty-item", ["--methods", "finetune,,neggrad"], r"--methods: .*an empty name"),
    ("random-0", ["--scenario", "random-0"], r"--scenario: expected random-<percent> with a percent in \(0, 100\)"),
    ("random-150", ["--scenario", "random-150"], r"--scenario: expected random-<percent> with a percent in \(0, 100\)"),
    ("backdoor-text", ["--scenario", "backdoor-ten"], r"--scenario: expected backdoor-<percent> with a number"),
]
if not torch.cuda.is_available():
    BENCH_CASES.append(("device-cuda-without-gpu", ["--device", "cuda"],
                        r"--device: expected an available device, got 'cuda' \((no CUDA GPU is visible|this torch "
                        r"build has no CUDA); use --device cpu\)"))


def _main(argv, capsys):
    from unlearnkit.cli import main

    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("args, match", [c[1:] for c in BENCH_CASES], ids=[c[0] for c in BENCH_CASES])
def test_bench_arguments_are_checked_before_any_work(args, match, tmp_path, capsys, monkeypatch):
    import re

    cache, out = tmp_path / "cache", tmp_path / "out"
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(cache))
    rc, err = _main(["bench", *args, "--quiet", "--no-plots", "--no-features", "--out", str(out)], capsys)
    assert rc == 2, err
    assert re.search(r"^unlearnkit: error: " + match, err, flags=re.M), err
    assert not out.exists() and not cache.exists()  # nothing written, nothing trained


def test_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for command in (["bench", "--methods", "finetune"], ["demo", "--quick"]):
        rc, err = _main([*command, "--quiet", "--out", ""], capsys)
        assert rc == 2 and "argument --out: expected a folder path, got ''" in err, err
    assert list(tmp_path.iterdir()) == []


def test_set_accepts_bare_strings_and_toml_values():
    from unlearnkit.bench.config import validate
    from unlearnkit.bench.runner import RunConfig
    from unlearnkit.cli.bench import _parse_set

    got = _parse_set(["dlfd.layer=features", "neggrad.lr=0.001", "finetune.epochs=3", 'scrub.alpha="0.5"'])
    assert got == {"dlfd": {"layer": "features"}, "neggrad": {"lr": 0.001}, "finetune": {"epochs": 3},
                   "scrub": {"alpha": "0.5"}}
    validate(RunConfig(methods=("dlfd",), overrides={"dlfd": {"layer": "features"}}))  # accepted as the schema says
    with pytest.raises(TypeError, match=r"^scrub\.alpha: expected a number"):  # a quoted number stays a string
        validate(RunConfig(methods=("scrub",), overrides={"scrub": {"alpha": "0.5"}}))


@pytest.mark.parametrize("config, exc, match", [
    (dict(seeds=()), ValueError, r"^seeds: expected at least one seed, got none"),
    (dict(seeds=(0, 0)), ValueError, r"^seeds: expected distinct seeds, got 0 more than once"),
    (dict(seeds=(-1,)), ValueError, r"^seeds: expected ints >= 0, got -1"),
    (dict(methods=()), ValueError, r"^methods: expected at least one method"),
    (dict(methods=("finetune", "finetune")), ValueError, r"^methods: expected each method once"),
    (dict(methods=("finetune",), overrides={"neggrad": {"lr": 1.0}}), ValueError,
     r"^overrides: expected overrides of the methods of this run"),
    (dict(device="tpu"), ValueError, r"^device: expected a torch device"),
])
def test_the_runner_validates_its_config_before_any_work(config, exc, match, tmp_path):
    from unlearnkit.bench import RunConfig, run

    with pytest.raises(exc, match=match):
        run(RunConfig(**config), out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_runner_refuses_an_empty_out_dir(tmp_path, monkeypatch):
    from unlearnkit.bench import RunConfig, run

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^out_dir: expected a folder path, got ''"):
        run(RunConfig(methods=("finetune",)), out_dir="", cache_dir=tmp_path / "cache", progress=False)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Checkpoint cache (issue 16): a grouped dataset's name has a "/", and a copied file is not its model.


def _tiny():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2)


def test_a_grouped_dataset_name_caches_in_a_fresh_folder(tmp_path):
    from unlearnkit.checkpoints import cached_train, checkpoint_path

    cache = tmp_path / "fresh-cache"  # does not exist yet, as on a first run of subclass-3
    model, meta = cached_train(_tiny(), lambda m: m, cache_dir=cache, key="k1", name="digits/grouped-original")
    path = checkpoint_path(cache, "digits/grouped-original", "k1")
    assert path.parent == cache and path.name == "digits-grouped-original-k1.pt" and path.exists()
    assert meta["cached"] is False
    _, meta = cached_train(_tiny(), lambda m: pytest.fail("trained again"), cache_dir=cache, key="k1",
                           name="digits/grouped-original")
    assert meta["cached"] is True


def test_a_checkpoint_copied_under_another_models_name_is_not_loaded(tmp_path):
    from unlearnkit.checkpoints import cached_train, checkpoint_path, load_checkpoint

    gold = _tiny()
    with torch.no_grad():
        gold.weight.fill_(7.0)
    cached_train(gold, lambda m: m, cache_dir=tmp_path, key="goldkey", name="digits-gold")
    original_path = checkpoint_path(tmp_path, "digits-original", "origkey")
    original_path.write_bytes(checkpoint_path(tmp_path, "digits-gold", "goldkey").read_bytes())
    with pytest.raises(ValueError, match=r"^checkpoint: expected the model stored under key origkey in .*"
                                         r"digits-original-origkey\.pt, got key goldkey"):
        load_checkpoint(_tiny(), original_path, key="origkey")
    trained = []
    with pytest.warns(UserWarning, match="got key goldkey.*training it again"):
        model, meta = cached_train(_tiny(), lambda m: trained.append(1) or m, cache_dir=tmp_path, key="origkey",
                                   name="digits-original")
    assert trained == [1] and meta["cached"] is False and not torch.all(model.weight == 7.0)
    assert load_checkpoint(_tiny(), original_path, key="origkey")["key"] == "origkey"  # replaced by the right one


# ---------------------------------------------------------------------------------------------
# Issue 23, item 9: a recipes file without `train`, a failed pre-flight that kept --out claimed,
# fp16 on a CPU, Ctrl-C, and --no-features drawing the UMAP plot anyway.

TINY_RECIPES = """
[datasets.digits]
model = "small-cnn"
train = { epochs = 1, batch_size = 64, lr = 0.05 }
[datasets.digits.methods]
finetune = { epochs = 1, lr = 0.02, batch_size = 64 }
"""


IN_BAD = r"recipes: expected \[datasets\.digits\] in .*bad\.toml to have a "


@pytest.mark.parametrize("text, match", [
    ('[datasets.digits]\nmodel = "small-cnn"\n', IN_BAD + r"'train' table \(e\.g\. train = \{ epochs = 10, .*\), got nothing"),
    ('[datasets.digits]\ntrain = { epochs = 1 }\n', IN_BAD + r"'model' name \(e\.g\. model = \"small-cnn\"\), got nothing"),
    ('[datasets.digits]\nmodel = "small-cnn"\ntrain = 3\n', IN_BAD + r"'train' table .*got 3"),
    ('[something]\nelse = 1\n', r"recipes: expected a \[datasets\.<name>\] table in .*bad\.toml, got none"),
])
def test_a_recipes_file_without_what_a_run_needs_is_a_clear_error(text, match, tmp_path, capsys, monkeypatch,
                                                                   recipes_file):
    # Before: KeyError: 'train' (a traceback) from the runner.
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    rc, err = _main(["bench", "--methods", "finetune", "--recipes", recipes_file(text, "bad.toml"), "--quiet",
                     "--no-plots", "--no-features", "--out", str(out)], capsys)
    assert rc == 2 and re.search(r"^unlearnkit: error: " + match, err, flags=re.M), err
    assert "Traceback" not in err and not out.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("args, match", [
    (["--scenario", "class-99"], r"forget_class: expected one of the training labels"),
    (["--dataset", "cifar10"], r"cifar-10-batches-py .* was not found"),
])
def test_a_failed_preflight_releases_out_for_the_retry(args, match, tmp_path, capsys, monkeypatch):
    # Before: the failed run left run-config.json in --out, and the corrected retry was refused
    # ("--out: expected a new folder or one holding a run with the same settings").
    from unlearnkit.bench.units import claim_out

    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path / "no-data"))  # CIFAR is never there
    out = tmp_path / "out"
    rc, err = _main(["bench", *args, "--methods", "finetune", "--quiet", "--no-plots", "--no-features",
                     "--out", str(out)], capsys)
    assert rc == 2 and re.search(match, err), err
    assert not out.exists()  # it created the folder, so it removed it again
    # a folder that existed before is left as it was (empty), not refused afterwards
    out.mkdir()
    rc, err = _main(["bench", *args, "--methods", "finetune", "--quiet", "--no-plots", "--no-features",
                     "--out", str(out)], capsys)
    assert rc == 2 and list(out.iterdir()) == []
    with claim_out(out, {"config": "the corrected retry"}):  # other settings: accepted
        pass


def test_fp16_on_a_cpu_warns_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    # an invalid --set stops the run right after the pre-flight: the warning came first
    rc, err = _main(["bench", "--precision", "fp16", "--device", "cpu", "--methods", "finetune", "--set",
                     "finetune.speed=1", "--quiet", "--out", str(tmp_path / "out")], capsys)
    assert rc == 2
    assert err.index("unlearnkit: warning: --precision fp16 on a CPU is emulated") < err.index("unlearnkit: error:")
    rc, err = _main(["bench", "--precision", "bf16", "--methods", "finetune", "--set", "finetune.speed=1",
                     "--quiet", "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and "warning" not in err


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch):
    # Before: a 97-frame traceback (resuming worked).
    import unlearnkit.bench as bench

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bench, "run", interrupted)
    out = tmp_path / "out"
    rc, err = _main(["bench", "--methods", "finetune", "--quiet", "--out", str(out)], capsys)
    assert rc == 130
    assert err.strip() == (f"unlearnkit: interrupted (Ctrl-C); finished work is kept (results in {out}, models in "
                           f"the checkpoint cache): run the same command to resume")
    monkeypatch.chdir(tmp_path)  # the default --out is named in the line, since "the same command" would not resume
    rc, err = _main(["bench", "--methods", "finetune", "--quiet"], capsys)
    assert rc == 130 and re.search(r"run the same command with --out unlearnkit-results/digits-random-10-\d{8}-\d{6} "
                                   r"to resume$", err.strip()), err


def test_no_features_skips_the_embedding_plot(tmp_path, capsys, monkeypatch, recipes_file):
    # Before: --no-features still computed a feature sample per model and drew its UMAP (35 s of a 39 s run).
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    rc, err = _main(["bench", "--methods", "finetune", "--recipes", recipes_file(TINY_RECIPES), "--no-features",
                     "--quiet", "--out", str(out)], capsys)
    assert rc == 0, err
    assert (out / "loss_hist.png").exists() and (out / "gaps.png").exists()
    assert not (out / "embedding.png").exists()
    for unit in (out / "units").glob("*.npz"):
        with np.load(unit) as z:
            assert "features" not in z.files and "loss_forget" in z.files
