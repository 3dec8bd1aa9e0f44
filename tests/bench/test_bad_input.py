"""Inputs users get wrong, fed to every public entry point: each must fail with a clear error that
names the argument (ValueError/TypeError, or FileNotFoundError for paths), and leave no partial
output file. The case count is printed by `pytest -q tests/test_bad_input.py` (one test per case)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import digits_models
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


def _method_cases():
    split, original, _ = digits_models()
    x, y = split.forget.tensors
    xr, yr = split.retain.tensors
    m = get_method("finetune")(epochs=1)
    return [
        ("labels-outside-classes", lambda: m.unlearn(original, (x, y + 10), split.retain), ValueError, "forget.*labels"),
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
def test_method_bad_input(case):
    name, fn, exc, match = _method_cases()[case]
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
    ("set-field", ["bench", "--methods", "neggrad", "--set", "neggrad.speed=3"], "hparams"),
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
    proc = subprocess.run([sys.executable, "-m", "unlearnkit.cli", "demo", "--quick", "--quiet", "--out",
                           str(blocker / "results")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "UNLEARNKIT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2 and "a-file" in proc.stderr
    assert "Traceback" not in proc.stderr
