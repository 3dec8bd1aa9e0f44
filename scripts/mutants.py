"""A mutation check of the test suite (issue 24): deliberate bugs, each applied to a temporary copy of
the package, must each make at least one of the tests named for it fail.

Each mutant is one exact text substitution in one file of ``python/unlearnkit`` (the text must occur
exactly once: a substitution that no longer applies is reported and fails the check, so the list
follows the code). The package is copied (with its compiled ``_core`` extension) to a temporary
directory that goes first on ``PYTHONPATH``; the mutant is written there, never in the working tree.
Then ``pytest -x`` runs the mutant's tests against that copy (bytecode writing off, so no stale
``.pyc`` of one mutant serves the next). A mutant is caught when pytest reports a failing test
(exit status 1); it survives when every test passes.

Before the mutants, the union of their tests runs once on the unmodified copy (``--no-baseline``
skips it): a test that already fails would "catch" everything.

    python scripts/mutants.py                      # every mutant; the table; exit 1 if one survives
    python scripts/mutants.py --only sinkhorn-one-sided,fq-larger-k
    python scripts/mutants.py --tests-rev c66af68^  # the tests as they were at a commit (files that
                                                    # did not exist then are left out)
    python scripts/mutants.py --tests-tree DIR      # the tests of DIR (holding tests/ and pyproject.toml)
    python scripts/mutants.py --list

Run by ``make mutants`` (not part of ``make test``): 23 mutants in 7 minutes on two cores at load ~2
(the baseline 109 s), 25 minutes at load ~12.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "unlearnkit"


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    file: str          # relative to python/unlearnkit
    old: str           # must occur exactly once in the file
    new: str
    tests: tuple       # pytest node ids, relative to the repository root
    why: str = ""


DIRECTION = "tests/methods/test_direction.py::test_method_moves_forget_accuracy_toward_gold_and_keeps_retain"

MUTANTS = [
    # ---- the five of issue 24
    Mutant("bench-mia-members-swapped", "experiment/evaluate.py",
           'M.mia_suite(probs["retain"], labels["retain"], probs["test"], labels["test"], probs["forget"],',
           'M.mia_suite(probs["test"], labels["test"], probs["retain"], labels["retain"], probs["forget"],',
           ("tests/bench/test_evaluate_oracle.py", "tests/bench/test_headline.py"),
           "the bench's MIA trained with test samples as members and retain samples as non-members"),
    Mutant("audit-challenge-args-swapped", "experiment/scores.py",
           'score = challenge_score(f, u["retain"]["correct"].mean(axis=1), r["retain"]["correct"].mean(axis=1),\n'
           '                            u["test"]["correct"].mean(axis=1), r["test"]["correct"].mean(axis=1))',
           'score = challenge_score(f, r["retain"]["correct"].mean(axis=1), u["retain"]["correct"].mean(axis=1),\n'
           '                            r["test"]["correct"].mean(axis=1), u["test"]["correct"].mean(axis=1))',
           ("tests/audit/test_scores_oracle.py", "tests/audit/test_audit.py", "tests/metrics/test_per_example.py"),
           "the challenge score's accuracy ratios inverted (the pools' arguments in the wrong order)"),
    Mutant("sinkhorn-one-sided", "losses/sinkhorn.py",
           '            value = (ot_xy - (ad * f_xx).sum() - (bd * g_yy).sum()).clamp_min(0.0)  # >= 0 in exact arithmetic\n'
           '            terms += [(-0.5, "xx", op_xx, f_xx, f_xx, la, la, eps_x), (-0.5, "yy", op_yy, g_yy, g_yy, lb, lb, eps_y)]\n'
           '            wterms = [(a_w, f - f_xx), (b_w, g - g_yy)]',
           '            value = (ot_xy - 2.0 * (ad * f_xx).sum()).clamp_min(0.0)  # >= 0 in exact arithmetic\n'
           '            terms += [(-1.0, "xx", op_xx, f_xx, f_xx, la, la, eps_x)]\n'
           '            wterms = [(a_w, f - 2.0 * f_xx), (b_w, g)]',
           ("tests/losses/test_sinkhorn_divergence_oracle.py", "tests/losses/test_losses.py",
            "tests/losses/test_sinkhorn_precision.py", "tests/losses/test_half_precision.py"),
           "the divergence debiased by OT(a, a) alone (value, point and weight gradients consistent with it)"),
    Mutant("fq-larger-k", "metrics/per_example.py",
           "return float(epsilon_points(eps, min(u.shape[0], r.shape[0])).mean())",
           "return float(epsilon_points(eps, max(u.shape[0], r.shape[0])).mean())",
           ("tests/audit/test_scores_oracle.py", "tests/metrics/test_per_example.py"),
           "forgetting_quality binned by the larger pool's K"),
    Mutant("mean-closed-damage-all", "experiment/evaluate.py",
           "damage = float(excess / scale / len(defined))",
           "damage = float(excess / scale / len(metrics))",
           ("tests/bench/test_headline.py",),
           "mean_closed's damage divided by all metrics instead of the defined ones"),
    # ---- audit
    Mutant("audit-k-larger", "experiment/scores.py",
           'k = min(u["forget"]["phi"].shape[0], r["forget"]["phi"].shape[0])',
           'k = max(u["forget"]["phi"].shape[0], r["forget"]["phi"].shape[0])',
           ("tests/audit/test_scores_oracle.py", "tests/audit/test_audit.py"),
           "the audit's points binned by the larger pool's K"),
    Mutant("audit-rmia-targets", "experiment/scores.py",
           "targets = rmia_targets or u", "targets = rmia_targets or r",
           ("tests/audit/test_scores_oracle.py", "tests/audit/test_audit.py"),
           "RMIA's targets the retrained pool instead of the method's"),
    Mutant("audit-klom-swapped", "experiment/scores.py",
           'v = klom(u[s]["margin"], r[s]["margin"])', 'v = klom(r[s]["margin"], u[s]["margin"])',
           ("tests/audit/test_scores_oracle.py", "tests/audit/test_audit.py"),
           "KLOM as KL(retrained || unlearned)"),
    Mutant("audit-eps-at-clip", "experiment/scores.py",
           '"eps_at_clip": float((eps >= 50).mean())', '"eps_at_clip": float((eps > 50).mean())',
           ("tests/audit/test_scores_oracle.py", "tests/audit/test_audit.py"),
           "the share of clipped epsilons counted with > (always 0)"),
    # (Not a mutant: the floor's rmia_exclude=True -> False. At gamma = 1 and offline a = 1, leaving target k
    # out of its K references maps each likelihood ratio r = p_k / mean(p) to (K - 1) r / (K - r), an
    # increasing function of r, so every pairwise comparison, hence every RMIA score, is unchanged: an
    # equivalent mutant, found by this check; the exclusion matters only for a < 1 or gamma != 1.)
    Mutant("audit-floor-one-half", "experiment/scores.py",
           "first, second = _half(r, slice(0, h)), _half(r, slice(h, 2 * h))",
           "first, second = _half(r, slice(0, h)), _half(r, slice(0, h))",
           ("tests/audit/test_scores_oracle.py", "tests/audit/test_audit.py"),
           "the retrained floor scores the first half of the retrained pool against itself"),
    # ---- metrics
    Mutant("ulira-no-leave-one-out", "metrics/per_example.py",
           "s_u = _log_normal(u, mu_u_loo, sd_u_loo) - _log_normal(u, mu_r, sd_r)",
           "s_u = _log_normal(u, mu_u, sd_u) - _log_normal(u, mu_r, sd_r)",
           ("tests/audit/test_scores_oracle.py", "tests/metrics/test_per_example.py"),
           "U-LiRA's unlearned targets scored by a Gaussian fitted with themselves in it"),
    Mutant("m-entropy-wrong-log", "metrics/membership.py",
           "others = -p * np.log(np.maximum(1.0 - p, _EPS))", "others = -p * np.log(np.maximum(p, _EPS))",
           ("tests/bench/test_evaluate_oracle.py", "tests/metrics/test_membership.py"),
           "modified entropy with ln p_i for the other classes (plain entropy) instead of ln(1 - p_i)"),
    Mutant("svc-attacks-logistic", "metrics/membership.py",
           's["forget"], attack="svc",', 's["forget"], attack="logistic",',
           ("tests/bench/test_evaluate_oracle.py", "tests/metrics/test_membership.py"),
           "mia_suite's SVC attacks run as logistic regressions"),
    Mutant("loss-threshold-median", "metrics/membership.py",
           "return float((t >= m.mean()).mean())", "return float((t >= np.median(m)).mean())",
           ("tests/bench/test_evaluate_oracle.py", "tests/metrics/test_membership.py"),
           "Yeom's threshold at the median member loss instead of the mean"),
    Mutant("clustering-always-raises", "metrics/clustering.py",
           "    a, b = _labels_pair(labels_true, labels_pred)\n"
           "    return _finish(_core.clustering_scores(a, b, matched), matched)",
           "    raise ValueError(\"labels_true: mutant\")",
           ("tests/engine/test_engine_fuzz.py::test_fuzz_clustering_scores",),
           "clustering_scores raises ValueError on every input (what the fuzz test used to accept)"),
    # ---- bench
    Mutant("bench-da-swapped", "experiment/evaluate.py",
           'out[f"da_{name}"] = M.dimensional_alignment(z, z_r)', 'out[f"da_{name}"] = M.dimensional_alignment(z_r, z)',
           ("tests/bench/test_evaluate_oracle.py", "tests/bench/test_headline.py"),
           "DA of the retain features in the set's eigenspace"),
    Mutant("bench-pair-f1-is-matched-f1", "experiment/evaluate.py",
           'out[f"pair_f1_{name}"] = scores["pair_f1"]', 'out[f"pair_f1_{name}"] = scores["matched_f1"]',
           ("tests/bench/test_evaluate_oracle.py", "tests/bench/test_headline.py"),
           "the pair-counting F1 column holding the Hungarian-matched F1"),
    Mutant("bench-probe-on-test", "experiment/evaluate.py",
           "probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(z_r, y_r)",
           'probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(*feats["test"])',
           ("tests/bench/test_evaluate_oracle.py", "tests/bench/test_headline.py"),
           "the linear probe trained on the test features"),
    # ---- losses
    Mutant("sinkhorn-weight-grad-biased", "losses/sinkhorn.py",
           "wterms = [(a_w, f - f_xx), (b_w, g - g_yy)]", "wterms = [(a_w, f), (b_w, g)]",
           ("tests/losses/test_sinkhorn_divergence_oracle.py", "tests/losses/test_losses.py"),
           "the divergence's weight gradient without the debiasing terms"),
    # ---- methods
    Mutant("finetune-on-forget", "methods/finetune.py",
           "run_epochs(model, data.retain, epochs=p.epochs", "run_epochs(model, data.forget, epochs=p.epochs",
           (f"{DIRECTION}[finetune]", "tests/methods/test_finetune.py"),
           "fine-tuning on the forget set"),
    Mutant("neggrad-descends", "methods/neggrad.py",
           'phase="forget-ascent", sign=-1.0', 'phase="forget-ascent", sign=1.0',
           (f"{DIRECTION}[neggrad]", "tests/methods/test_neggrad.py"),
           "NegGrad descending the forget loss"),
    Mutant("random-labels-not-relabelled", "methods/random_labels.py",
           "return torch.where((idx < n_f).to(yb.device), wrong, yb)", "return yb",
           (f"{DIRECTION}[random_labels]", "tests/methods/test_random_labels.py"),
           "random labels training on the forget set's true labels"),
    Mutant("retrain-no-reset", "methods/retrain.py",
           "        reset_parameters(model)\n        return fit(", "        return fit(",
           ("tests/methods/test_direction.py::test_retrain_equals_training_from_scratch_on_the_retain_set",
            "tests/methods/test_base.py", "tests/methods/test_params.py"),
           "retrain fine-tuning the original on the retain set instead of training from scratch"),
]


def copy_package(dest: pathlib.Path) -> pathlib.Path:
    out = dest / "unlearnkit"
    shutil.copytree(PACKAGE, out, ignore=shutil.ignore_patterns("__pycache__"))
    if not any(out.glob("_core*")):
        raise SystemExit(f"mutants: no compiled _core extension in {PACKAGE} (run `make setup` first)")
    return out


def tests_tree(rev: str | None, dest: pathlib.Path) -> pathlib.Path:
    """The directory pytest runs in: the repository itself, or its tests/ and pyproject.toml at ``rev``."""
    if rev is None:
        return ROOT
    tree = dest / "repo"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", rev, "tests", "pyproject.toml"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def present(tests, tree: pathlib.Path) -> list[str]:
    return [t for t in tests if (tree / t.split("::")[0]).exists()]


def run_pytest(tests, tree: pathlib.Path, env: dict, stop_first: bool = True) -> tuple[int, str, float]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "--no-header", "-W", "ignore"]
    cmd += (["-x"] if stop_first else []) + list(tests)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0


def first_failure(output: str) -> str:
    m = re.search(r"^FAILED (\S+)", output, re.M)
    return m.group(1) if m else "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated mutant names")
    ap.add_argument("--tests-rev", help="run the tests as they were at this git revision")
    ap.add_argument("--tests-tree", help="run the tests of this directory (holding tests/ and pyproject.toml)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the run of the tests on the unmodified copy")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = ap.parse_args(argv)
    mutants = MUTANTS
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - {m.name for m in MUTANTS})
        if unknown:
            ap.error(f"--only: no mutant(s) {unknown}; see --list")
        mutants = [m for m in MUTANTS if m.name in names]
    if args.list:
        for m in mutants:
            print(f"{m.name:32s} {m.file:24s} {m.why}")
        return 0
    with tempfile.TemporaryDirectory(prefix="unlearnkit-mutants-") as tmp:
        tmp = pathlib.Path(tmp)
        pkg = copy_package(tmp / "site")
        tree = pathlib.Path(args.tests_tree).resolve() if args.tests_tree else tests_tree(args.tests_rev, tmp)
        env = {**os.environ, "PYTHONPATH": str(tmp / "site"), "PYTHONDONTWRITEBYTECODE": "1"}
        env.setdefault("OMP_NUM_THREADS", "1")
        where = subprocess.run([sys.executable, "-c", "import unlearnkit; print(unlearnkit.__file__)"], cwd=tree,
                               env=env, capture_output=True, text=True).stdout.strip()
        if not where.startswith(str(pkg)):
            print(f"mutants: the copy is not the package imported (got {where!r})", file=sys.stderr)
            return 2
        if not args.no_baseline:
            union = list(dict.fromkeys(t for m in mutants for t in present(m.tests, tree)))
            rc, out, secs = run_pytest(union, tree, env, stop_first=False)
            print(f"baseline: the mutants' tests on the unmodified package: exit {rc} ({secs:.0f} s)", flush=True)
            if rc != 0:
                print(out[-4000:], file=sys.stderr)
                return 2
        rows, bad = [], 0
        for m in mutants:
            path = pkg / m.file
            text = path.read_text()
            count = text.count(m.old)
            tests = present(m.tests, tree)
            shown = ", ".join(t.replace("tests/", "") for t in tests) or "(none at this revision)"
            if count != 1:
                rows.append((m.name, m.file, shown, f"DOES NOT APPLY (the text occurs {count} times)"))
                bad += 1
                continue
            if not tests:
                rows.append((m.name, m.file, shown, "NO (no test)"))
                bad += 1
                continue
            path.write_text(text.replace(m.old, m.new))
            try:
                rc, out, secs = run_pytest(tests, tree, env)
            finally:
                path.write_text(text)
            if rc == 1:
                verdict = f"yes ({first_failure(out).replace('tests/', '')}, {secs:.0f} s)"
            elif rc == 0:
                verdict, bad = f"NO ({secs:.0f} s)", bad + 1
            else:
                verdict, bad = f"ERROR (pytest exit {rc})", bad + 1
                print(out[-3000:], file=sys.stderr)
            rows.append((m.name, m.file, shown, verdict))
            print(f"{m.name}: {verdict}", flush=True)
    print()
    print("| mutant | file | tests | caught? |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{len(rows) - bad} of {len(rows)} mutants caught" + (f"; {bad} not" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
