"""Layer: tune. Hyper-parameter search for every unlearning method (``unlearnkit tune``): Ray Tune
with the Optuna (TPE) searcher over the ranges each method declares in its ``Params`` metadata,
scored on a tuning seed's validation data against its gold model (see ``tune.objective``).
Ray and Optuna are imported only when a search runs."""

from .objective import (DEFAULT_MAX_RTE, DEFAULT_SEED, FAILED_SCORE, INFEASIBLE_SCORE, REPORTED_SEEDS,  # noqa: I001
                        LeakError, TuningProblem, evaluate_val, mean_closed, prepare, score_trial)
from .search import best_trial, run_search, search_method
from .space import method_space, ray_domain, ray_space, start_point, to_hparams

__all__ = ["DEFAULT_MAX_RTE", "DEFAULT_SEED", "FAILED_SCORE", "INFEASIBLE_SCORE", "LeakError", "REPORTED_SEEDS",
           "TuningProblem", "best_trial", "evaluate_val", "mean_closed", "method_space", "prepare", "ray_domain",
           "ray_space", "run_search", "score_trial", "search_method", "start_point", "to_hparams"]
