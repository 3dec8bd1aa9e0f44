"""Layer: audit. The per-example unlearning audit: pools of models trained on Ray, scored per forget
example with the NeurIPS 2023 challenge's epsilon, U-LiRA, KLOM and RMIA
(``shared/papers/evaluation.md``; the scores themselves are in ``unlearnkit.metrics.per_example``).

    from unlearnkit.audit import AuditConfig, run_audit, write_audit
    result = run_audit(AuditConfig(dataset="digits", methods=("finetune",), pool=16))  # pool >= 6
    write_audit(result, "out/")

Ray is confined to :mod:`.pools`; everything else is plain numpy.
"""

from ..experiment.engine import audit_split, bench_columns
from ..experiment.pools import Member, PoolSetup, pool_members, run_pools
from ..experiment.scores import BENCH_COLUMNS, FLOOR, MIN_POOL, ORIGINAL, audit_columns, check_pool, score_pair, score_pools
from .report import LEGEND, table, write_audit
from .run import AuditConfig, estimate_pools, prepare_audit, resolve_methods, run_audit

__all__ = ["AuditConfig", "BENCH_COLUMNS", "FLOOR", "LEGEND", "MIN_POOL", "Member", "ORIGINAL", "PoolSetup", "audit_columns",
           "audit_split", "bench_columns", "check_pool", "estimate_pools", "pool_members", "prepare_audit",
           "resolve_methods", "run_audit", "run_pools", "score_pair", "score_pools", "table", "write_audit"]
