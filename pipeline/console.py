"""What a person sees while a `breastdx` verb runs: concise progress on the terminal,
everything else in a log file.

`breastdx_cli/main.py` and the verb modules it registers (breastdx_cli/lab.py,
lab/cv.py) call `setup_logging`, `quiet_run` and
`ensure_synthetic`; none of them imports `breastdx_cli.main` back.

* The console shows our own loggers' records, every error, and TFX's
  "Component X is running/finished" lines turned into ``X ...`` / ``X done in 3.2 s``
  (`ProgressFilter`), through the Pusher.
* TFX logs those lines with absl's logger. TensorFlow's SavedModel export (Transform
  saving its graph, every Trainer) silences absl around a loop and then "restores"
  ``absl.logging.get_verbosity()`` (tensorflow/python/trackable/autotrackable.py).
  That reads absl's ``--verbosity`` flag, whose default is WARNING when nobody set it:
  from the first export on, the ``absl`` logger stayed at WARNING and every later
  component's INFO line was dropped before any handler saw it (what `make demo` showed
  after Transform: nothing until the summary). `setup_logging` therefore sets the flag
  itself (``absl.logging.set_verbosity(INFO)``), so the restore puts back INFO.
* `quiet_run` points file descriptors 1 and 2 at the log file for the run: the pip and
  setuptools output of TFX's user-code wheel builds (subprocesses) and TensorFlow's C++
  messages land there; the console handler and the Trainers' progress bars
  (components/progress.py) keep a duplicate of the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import TextIO

log = logging.getLogger("breastdx")

COMPONENT_EVENT = re.compile(r"Component (\S+) is (running|finished)")
# Loggers whose INFO lines are progress a person wants (ours).
OWN_LOGGERS = (
    "breastdx",
    "components",
    "pipeline",
    "serving",
    "webapp",
    "breastdx_core",
    "breastdx_cli",
    "lab",
    "trainer_module",
)

_console_stream: TextIO | None = None


class ProgressFilter(logging.Filter):
    """Lets through our own messages, errors, and TFX's component start/finish lines,
    which it rewrites for the console (``record.console_message``) with the component's
    wall time; the record itself is left as it came, for the log file."""

    def __init__(self) -> None:
        super().__init__()
        self._started: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        match = COMPONENT_EVENT.search(record.getMessage())
        if match:
            name, event = match.groups()
            if event == "running":
                self._started[name] = time.time()
                record.console_message = f"{name} ..."
            else:
                seconds = time.time() - self._started.pop(name, time.time())
                record.console_message = f"{name} done in {seconds:.1f} s"
            return True
        # TFX loads a module file under its file name (patch_trainer_module, ...).
        return record.name.split(".")[0] in OWN_LOGGERS or record.name.endswith("_module")


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS message``, with the filter's rewritten message where it made one."""

    def format(self, record: logging.LogRecord) -> str:
        rewritten = getattr(record, "console_message", None)
        if rewritten is None:
            return super().format(record)
        return f"{self.formatTime(record, self.datefmt)} {rewritten}"


def console_stream() -> TextIO:
    """The terminal's stream (a duplicate of the original stderr, so it survives
    `quiet_run` pointing descriptor 2 at the log file)."""
    global _console_stream
    if _console_stream is None:
        try:
            # stderr's own encoding, and never an error: a bar's block characters on an
            # ASCII terminal must not silence it.
            _console_stream = os.fdopen(
                os.dup(sys.stderr.fileno()),
                "w",
                buffering=1,
                encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                errors="replace",
            )
        except (
            AttributeError,
            OSError,
            ValueError,
        ):  # a stderr without a descriptor (pytest capture)
            _console_stream = sys.stderr
    return _console_stream


def setup_logging(log_file: str | None, verbose: bool = False) -> None:
    """Concise progress on the terminal; everything (TFX, Beam, TF) in ``log_file``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.INFO)
    from absl import logging as absl_logging

    # absl's verbosity flag, not just its logger's level: TF restores the flag's value
    # after each SavedModel export (module docstring).
    absl_logging.set_verbosity(absl_logging.INFO)
    console = logging.StreamHandler(console_stream())
    console.setFormatter(ConsoleFormatter("%(asctime)s %(message)s", "%H:%M:%S"))
    if not verbose:
        console.addFilter(ProgressFilter())
    root.addHandler(console)
    if log_file:
        os.makedirs(os.path.dirname(log_file), exist_ok=True)
        full = logging.FileHandler(log_file)
        full.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(full)


@contextlib.contextmanager
def quiet_run(log_file: str) -> Iterator[None]:
    """Descriptors 1 and 2 to ``log_file`` for the block (subprocess walls, C++ chatter);
    the console handler and the Trainers' progress bars keep the terminal."""
    from components import progress

    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with open(log_file, "a") as target:
        for fd in (1, 2):
            os.dup2(target.fileno(), fd)
        progress.use_stream(console_stream())
        try:
            yield
        finally:
            progress.use_stream(None)
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def ensure_synthetic(config) -> bool:
    """Writes the synthetic data set for the config's task (and variant) if its folder
    is missing or empty. Returns True when it wrote it."""
    from pipeline import synthetic

    if os.path.isdir(config.data_root) and os.listdir(config.data_root):
        return False
    log.info("writing synthetic %s data to %s", config.task, config.data_root)
    if config.task == "idc":
        summary = synthetic.write_idc(
            config.data_root,
            config.data.synthetic_patients,
            config.data.synthetic_patches_per_patient,
            config.seed,
        )
    elif config.task == "busi":
        summary = synthetic.write_busi(config.data_root, seed=config.seed)
    elif config.task == "cbis" and config.variant == "mammo":
        summary = synthetic.write_cbis(
            config.data_root, patients=config.data.synthetic_cbis_patients, seed=config.seed
        )
    else:
        raise ValueError(
            f"no synthetic generator for task {config.task!r} (variant {config.variant!r}); "
            "give --data-root"
        )
    log.info(
        "wrote %d images of %d patients (%d files with the planted quirks)",
        summary.images,
        summary.patients,
        summary.files,
    )
    return True
