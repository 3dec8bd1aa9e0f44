"""Layer: experiment (tests). The run and audit configurations, declared once
(``unlearnkit.experiment.config``): validated when made, and the command lines' flags generated
from their fields.

Checked: the flags ``unlearnkit bench`` and ``unlearnkit audit`` offer for the config are exactly
the option fields (no field without a flag, no flag the config does not know), and parsing no
argument gives the dataclass's own defaults; a field added to a config gets its flag, default,
choices and parse step with nothing else written; bad values fail when the config is made, with the
field's name from Python and the flag's name from the command line, before anything is loaded or
trained (the audit used to train a reference model before refusing a bad ``--set``: it must now
exit in the parsing process without creating the cache or the results folder).
"""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from unlearnkit.cli._common import add_config_arguments, config_from_args
from unlearnkit.experiment.config import CLI_META, MIN_POOL, AuditConfig, RunConfig, TuneConfig, option


def _parser_of(command: str) -> argparse.ArgumentParser:
    from unlearnkit.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


@pytest.mark.parametrize("command, cls", [("bench", RunConfig), ("audit", AuditConfig), ("tune", TuneConfig)])
def test_every_option_field_has_its_flag_and_its_default(command, cls):
    parser = _parser_of(command)
    flags = parser.get_default("config_flags")
    options = {f.name for f in dataclasses.fields(cls) if CLI_META in f.metadata and f.metadata[CLI_META]["cli"]}
    assert set(flags) == options
    dests = {a.dest: a for a in parser._actions}
    for name, flag in flags.items():
        assert flag in dests[name].option_strings
        assert dests[name].help == dataclasses.fields(cls)[[f.name for f in dataclasses.fields(cls)].index(name)].metadata[
            CLI_META]["help"]
    # no argument at all: the config is the dataclass's default one (seeds and overrides aside)
    args = parser.parse_args([])
    made = config_from_args(cls, args, flags, {"seeds": (0,)} if cls is RunConfig else {})
    assert made == cls()


@dataclasses.dataclass(frozen=True)
class _Toy:
    dataset: str = option("digits", help="the dataset")
    rate: float = option(0.5, gt=0.0, le=1.0, help="a rate")
    mode: str = option("a", choices=("a", "b"), help="a mode")
    names: tuple[str, ...] = option(("x", "y"), parse=lambda s: tuple(s.split("+")), help="names")
    fancy: bool = option(True, help="turn the fancy part off")
    plain: bool = option(False, help="turn the plain part on", flag="--plainly")
    hidden: int = option(3, cli=False, help="not on the command line")

    def __post_init__(self):
        from unlearnkit._validation import check_params

        check_params(type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


def test_a_new_field_gets_its_flag_with_nothing_else_written():
    p = argparse.ArgumentParser()
    flags = add_config_arguments(p, _Toy)
    assert flags == {"dataset": "--dataset", "rate": "--rate", "mode": "--mode", "names": "--names",
                     "fancy": "--no-fancy", "plain": "--plainly"}
    made = config_from_args(_Toy, p.parse_args(["--rate", "0.25", "--mode", "b", "--names", "p+q", "--no-fancy",
                                                "--plainly"]), flags)
    assert made == _Toy(rate=0.25, mode="b", names=("p", "q"), fancy=False, plain=True)
    assert config_from_args(_Toy, p.parse_args([]), flags) == _Toy()
    with pytest.raises(SystemExit):  # argparse refuses a choice the field does not declare
        p.parse_args(["--mode", "c"])
    with pytest.raises(ValueError, match=r"^--rate: expected a number > 0 and <= 1, got 2\.0"):
        config_from_args(_Toy, p.parse_args(["--rate", "2"]), flags)


@pytest.mark.parametrize("kwargs, match", [
    ({"pool": 2}, rf"pool: expected K >= {MIN_POOL} models per pool, got 2: the retrained floor"),
    ({"threads": 0}, r"threads: expected an int >= 1, got 0"),
    ({"heldout_fraction": 1.0}, r"heldout_fraction: expected a number >= 0 and < 1, got 1\.0"),
    ({"methods": ("finetune", "nope")}, r"method: expected one of \["),
    ({"overrides": {"finetune": {"lr": -1}}}, r"finetune\.lr: expected a number > 0, got -1"),
    ({"overrides": {"neggrad": {"lr": 0.1}}}, r"overrides: expected overrides of the methods of this run"),
    ({"dataset": "mnist"}, r"dataset: expected one of \["),
    ({"scenario": "random-0"}, r"scenario: expected random-<percent>"),
])
def test_a_bad_audit_config_names_its_field(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        AuditConfig(**{"methods": ("finetune",), **kwargs})


@pytest.mark.parametrize("kwargs, match", [
    ({"audit": 3}, r"audit: expected 0 \(no audit\) or a pool size K >= 6"),
    ({"precision": "fp8"}, r"precision: expected one of \['fp32', 'bf16', 'fp16'\], got 'fp8'"),
    ({"seeds": (0, 0)}, r"seeds: expected distinct seeds, got 0 more than once"),
    ({"val_fraction": -0.1}, r"val_fraction: expected a number >= 0 and < 1"),
    ({"features": "yes"}, r"features: expected a bool"),
])
def test_a_bad_run_config_names_its_field(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RunConfig(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"trials": 0}, r"trials: expected an int >= 1, got 0"),
    ({"max_rte": 0.0}, r"max_rte: expected a number > 0"),
    ({"tuning_seeds": (100, 3)}, r"tuning_seeds: expected a tuning seed outside the reported seeds 0\.\.9"),
    ({"tuning_seeds": (100, 100)}, r"tuning_seeds: expected distinct tuning seeds"),
    ({"methods": ("retrain",)}, r"methods: retrain declares no search space"),
    ({"retrain_time": "guess"}, r"retrain_time: expected one of \['measure', 'cache'\]"),
    ({"num_cpus": 0}, r"num_cpus: expected an int >= 1, got 0"),
])
def test_a_bad_tune_config_names_its_field(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TuneConfig(**kwargs)


AUDIT_CASES = [
    (["--set", "finetune.lr=-1"], r"finetune\.lr: expected a number > 0, got -1"),
    (["--pool", "2"], r"--pool: expected K >= 6 models per pool, got 2"),
    (["--threads", "0"], r"--threads: expected an int >= 1, got 0"),
    (["--heldout-fraction", "1"], r"--heldout-fraction: expected a number >= 0 and < 1"),
    (["--methods", "finetune,,neggrad"], r"--methods: .*an empty name"),
    (["--dataset", "mnist"], r"--dataset: expected one of \["),
    (["--set", "neggrad.lr=0.1"], r"--set: expected overrides of the methods of this run \['finetune'\]"),
]


@pytest.mark.parametrize("args, match", [c for c in AUDIT_CASES], ids=[c[0][0] + c[0][1] for c in AUDIT_CASES])
def test_audit_arguments_are_checked_before_any_work(args, match, tmp_path, capsys, monkeypatch):
    import re

    from unlearnkit.cli import main

    cache, out = tmp_path / "cache", tmp_path / "out"
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(cache))
    try:
        rc = main(["audit", "--methods", "finetune", "--pool", "6", "--serial", "--quiet", *args, "--out", str(out)])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert re.search(r"^unlearnkit: error: " + match, err, flags=re.M), err
    assert not out.exists() and not cache.exists()  # nothing written, nothing trained
