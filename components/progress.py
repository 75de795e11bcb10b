"""Training progress a person can watch: a Keras callback with a bar per fit.

The Trainer modules (components/trainer/training.py, the mammography variant's
patch_trainer/ and whole_trainer/) add `StepProgress` to their ``fit`` callbacks.
On a terminal it draws a tqdm bar: on the stream `use_stream` names (the `breastdx`
console names the terminal while a pipeline runs, when descriptor 2 goes to the log
file: pipeline/console.py), else on ``sys.stderr``; elsewhere (CI, a cluster pod, a log
file) it logs one line per tenth of the steps instead, so a captured log does not fill with carriage returns.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import tf_keras as keras

log = logging.getLogger(__name__)

_stream: Any | None = None


def use_stream(stream: Any | None) -> None:
    """Where bars go from now on (None: ``sys.stderr``)."""
    global _stream
    _stream = stream


class StepProgress(keras.callbacks.Callback):
    """Counts training batches over all epochs of one ``fit``.

    Args:
        label: what is training ("Trainer", "PatchTrainer stage head").
        total_steps: batches in all (epochs x steps per epoch); 0 when unknown.
        stream: where the bar goes (default: `use_stream`'s, else ``sys.stderr``, at ``fit`` time).
    """

    def __init__(self, label: str, total_steps: int = 0, stream: Any | None = None) -> None:
        super().__init__()
        self.label = label
        self.total_steps = int(total_steps)
        self._stream = stream
        self._bar = None
        self._done = 0
        self._next_report = 0

    def _total(self) -> int:
        if self.total_steps:
            return self.total_steps
        params = self.params or {}
        return int((params.get("steps") or 0) * (params.get("epochs") or 1))

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        stream = self._stream or _stream or sys.stderr
        self._done, self._next_report = 0, 0
        total = self._total() or None
        if getattr(stream, "isatty", lambda: False)():
            from tqdm import tqdm

            # A fixed width: dynamic_ncols reads 0 columns on some pseudo-terminals and
            # then draws nothing.
            self._bar = tqdm(
                total=total, desc=self.label, unit="step", file=stream, leave=False, ncols=100
            )
        else:
            log.info("%s: training %s steps", self.label, total or "?")

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        self._done += 1
        loss = (logs or {}).get("loss")
        if self._bar is not None:
            self._bar.update(1)
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            return
        total = self._total()
        if total and self._done >= self._next_report:
            log.info(
                "%s: step %d/%d (%d%%)%s",
                self.label,
                self._done,
                total,
                100 * self._done // total,
                f", loss {loss:.4f}" if loss is not None else "",
            )
            self._next_report = self._done + max(1, total // 10)

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        log.info("%s: %d training steps done", self.label, self._done)
