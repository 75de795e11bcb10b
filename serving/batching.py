"""Server-side batching of concurrent predict requests, like TF Serving's ``--enable_batching``.

``serving.server`` sends every ``:predict`` through :class:`Batcher.run`. Requests for the
same loaded version, signature and input layout that arrive within ``timeout_s`` of each
other are concatenated along the batch axis, run as one signature call and split again.
One TF call per batch instead of per request is where the throughput comes from: the
per-call overhead of a SavedModel function is larger than a 64x64 image's compute. A batch
that fails (one undecodable image fails the whole call) is re-run request by request, so a
bad request never fails its neighbours.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import tensorflow as tf

from breastdx_core import errors

log = logging.getLogger(__name__)

from serving.settings import DEFAULT_BATCH_THREADS as DEFAULT_THREADS
from serving.settings import DEFAULT_BATCH_TIMEOUT_S as DEFAULT_TIMEOUT_S
from serving.settings import DEFAULT_MAX_BATCH_SIZE


class SignatureCallError(errors.BreastdxError):
    """The signature rejected its inputs (a bad image) or failed; ``status`` is 400 or 500."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message = message
        self.status = status
        self.http_status = status


def call_signature(function, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Runs a concrete signature function on numpy inputs.

    Args:
        function: a SavedModel signature (keyword inputs, dict outputs).
        inputs: input name -> array whose first axis is the batch.

    Returns:
        output name -> numpy array.

    Raises:
        SignatureCallError: 400 for TensorFlow's InvalidArgumentError (e.g. an undecodable
            image), 500 otherwise.
    """
    try:
        outputs = function(**{name: tf.constant(array) for name, array in inputs.items()})
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
        raise SignatureCallError(_first_line(err), 400) from None
    except tf.errors.OpError as err:
        raise SignatureCallError(_first_line(err), 500) from None
    return {name: tensor.numpy() for name, tensor in outputs.items()}


_NOISE = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ", "[Op:")


def _first_line(err: Exception) -> str:
    """The line of a TensorFlow error that says what went wrong, without graph internals."""
    text = getattr(err, "message", None) or str(err)
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(_NOISE):
            return line
    return type(err).__name__


class _Task:
    def __init__(self, function, inputs: dict[str, np.ndarray]):
        self.function = function
        self.inputs = inputs
        self.rows = len(next(iter(inputs.values())))
        self.arrived = time.monotonic()
        self.done = threading.Event()
        self.result: dict[str, np.ndarray] | None = None
        self.error: SignatureCallError | None = None


class Batcher:
    """Queues requests by (function, input layout) and runs them in batches.

    Args:
        max_batch_size: most rows in one signature call.
        timeout_s: how long the first request of a batch waits for company.
        num_threads: batches that may run at once.
    """

    def __init__(
        self,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        num_threads: int = DEFAULT_THREADS,
    ):
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self.num_threads = num_threads
        self._queues: dict[tuple, list[_Task]] = {}
        self._cond = threading.Condition()
        self.batches = 0
        self.requests = 0
        for index in range(num_threads):
            threading.Thread(target=self._work, name=f"batcher-{index}", daemon=True).start()

    def run(self, function, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs ``function`` on ``inputs``, batched with concurrent requests; blocks until done."""
        if (
            not inputs
            or any(np.ndim(a) == 0 for a in inputs.values())
            or len({len(a) for a in inputs.values()}) != 1
        ):
            return call_signature(function, inputs)
        task = _Task(function, inputs)
        if task.rows >= self.max_batch_size:
            return call_signature(function, inputs)
        key = (id(function),) + tuple(
            sorted((name, array.shape[1:], array.dtype.str) for name, array in inputs.items())
        )
        with self._cond:
            self._queues.setdefault(key, []).append(task)
            self._cond.notify_all()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    def _take(self) -> list[_Task]:
        with self._cond:
            while True:
                while not self._queues:
                    self._cond.wait()
                key = min(self._queues, key=lambda k: self._queues[k][0].arrived)
                deadline = self._queues[key][0].arrived + self.timeout_s
                while (
                    key in self._queues
                    and sum(t.rows for t in self._queues[key]) < self.max_batch_size
                ):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if key not in self._queues:  # another worker took it meanwhile
                    continue
                queue, taken, rows = self._queues[key], [], 0
                while queue and (not taken or rows + queue[0].rows <= self.max_batch_size):
                    rows += queue[0].rows
                    taken.append(queue.pop(0))
                if not queue:
                    del self._queues[key]
                return taken

    def _work(self) -> None:
        while True:
            tasks = self._take()
            try:
                self._run_batch(tasks)
            except Exception as err:  # never leave a request waiting forever
                log.exception("batch failed")
                for task in tasks:
                    if not task.done.is_set():
                        task.error = SignatureCallError(_first_line(err), 500)
                        task.done.set()

    def _run_batch(self, tasks: list[_Task]) -> None:
        self.batches += 1
        self.requests += len(tasks)
        if len(tasks) == 1:
            self._run_alone(tasks[0])
            return
        names = list(tasks[0].inputs)
        merged = {name: np.concatenate([task.inputs[name] for task in tasks]) for name in names}
        try:
            outputs = call_signature(tasks[0].function, merged)
        except SignatureCallError:
            for task in tasks:  # find the bad request; the others still get answers
                self._run_alone(task)
            return
        start = 0
        for task in tasks:
            task.result = {
                name: array[start : start + task.rows] for name, array in outputs.items()
            }
            start += task.rows
            task.done.set()

    @staticmethod
    def _run_alone(task: _Task) -> None:
        try:
            task.result = call_signature(task.function, task.inputs)
        except SignatureCallError as err:
            task.error = err
        task.done.set()
