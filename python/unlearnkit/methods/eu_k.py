"""Layer: methods. EU-k (exact unlearning of the last k layers): re-initialise the last k
parameterised layers and train them from scratch on the retain set, the earlier layers frozen.
Goel et al., Towards Adversarial Evaluation of Machine Unlearning, arXiv 2201.06640 (2022); a
baseline of SCRUB (NeurIPS 2023) and DLFD (AAAI 2025).

Invariant: every parameter and buffer outside the last k layers is bit-identical before and after;
the last k layers never see the original values of their own parameters (each module's
``reset_parameters``, seeded by ``seed``), so they are exactly unlearned when the frozen layers
are taken as a fixed feature extractor. ``k`` is counted as in CF-k (``cf_k.parameterised_layers``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .._validation import categorical, integers, log_uniform, param
from ._stop import StopParams
from .base import Method, register
from .cf_k import example_input, last_k_layers, train_last_layers


@dataclass(frozen=True)
class EUkParams(StopParams):
    """k: parameterised layers counted from the head that are re-initialised and retrained;
    epochs, lr, momentum, weight_decay, batch_size: SGD on the retain set (SCRUB's code: 10 epochs
    at lr 0.01, batch 64)."""

    k: int = param(2, ge=1, space=integers(1, 4))
    epochs: int = param(10, ge=0, space=integers(1, 20))
    lr: float = param(0.01, gt=0, space=log_uniform(1e-4, 1e-1))
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-4, ge=0)
    batch_size: int = param(64, ge=1, space=categorical(32, 64, 128, 256))


@register
class EUk(Method[EUkParams]):
    """EU-k: re-initialise the last ``k`` parameterised layers and train them on the retain set.

    SCRUB's code rolls the layers back to their stored initial values; with no stored
    initialisation we draw a fresh one (``reset_parameters``, PyTorch's default init), which is the
    same distribution. A layer type without ``reset_parameters`` raises ``ValueError``.
    """

    name = "eu_k"
    paper = ("Goel et al., Towards Adversarial Evaluation of Machine Unlearning (EU-k), arXiv 2201.06640, 2022; "
             "as a baseline in Kurmanji et al., SCRUB, NeurIPS 2023")
    Params = EUkParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        layers = last_k_layers(model, p.k, example_input(data, ctx), name=f"{self.name}.k")
        resets = []
        for m in layers:
            reset = getattr(m, "reset_parameters", None)
            if reset is None:
                raise ValueError(f"model: expected layers with reset_parameters() among the last {p.k}, "
                                 f"got {type(m).__name__}")
            resets.append(reset)
        for reset in resets:  # torch.manual_seed(seed) is in force here (Method.unlearn)
            reset()
        train_last_layers(model, layers, data, ctx, epochs=p.epochs, lr=p.lr, momentum=p.momentum,
                          weight_decay=p.weight_decay, batch_size=p.batch_size, phase="retain")
        return model
