"""Progress events: what methods and training loops report, and the tqdm bars that show them.

A method never prints. It calls its callbacks with a :class:`StepEvent` after each optimisation
step; the runner passes a :class:`ProgressBars` so a person sees bars, a test passes a list's
``append`` to record the losses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tqdm.auto import tqdm


@dataclass(frozen=True)
class StepEvent:
    """One optimisation step (or one monitored measurement).

    Attributes:
        source: who reports, e.g. ``"muda"`` or ``"train:original"``.
        phase: e.g. ``"forget"``, ``"recover"``, ``"epoch 3"``.
        step: steps done in this phase (1-based).
        total: steps the phase will take (None if unknown).
        logs: scalar values to show, e.g. ``{"loss": 0.31, "da": 0.92}``.
    """

    source: str
    phase: str
    step: int
    total: int | None
    logs: dict = field(default_factory=dict)


Callback = Callable[[StepEvent], None]


def emit(callbacks: Iterable[Callback], event: StepEvent) -> None:
    for cb in callbacks:
        cb(event)


class ProgressBars:
    """A callback that draws one tqdm bar per (source, phase) and shows the latest logs."""

    def __init__(self, *, disable: bool = False, leave: bool = False):
        self.disable, self.leave = disable, leave
        self._bar: tqdm | None = None
        self._key: tuple[str, str] | None = None

    def __call__(self, event: StepEvent) -> None:
        key = (event.source, event.phase)
        if key != self._key:
            self.close()
            self._key = key
            self._bar = tqdm(total=event.total, desc=f"{event.source} {event.phase}", leave=self.leave,
                             disable=self.disable, dynamic_ncols=True)
        assert self._bar is not None
        self._bar.update(event.step - self._bar.n)
        if event.logs:
            self._bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in event.logs.items()},
                                  refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._key = None
