"""What the `breastdx` console shows (pipeline/console.py): TFX's component lines survive
TensorFlow's SavedModel export (the bug that hid everything after Transform), and
subprocess walls go to the log file, not the terminal. The full demo's console is
checked by tests/test_cbis_e2e.py."""

import io
import logging
import subprocess
import sys

import pytest
from absl import logging as absl_logging

from pipeline import console


@pytest.fixture
def captured(tmp_path):
    """setup_logging with the console handler writing to a StringIO; restores logging."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_verbosity = absl_logging.get_verbosity()
    log_file = str(tmp_path / "logs" / "run.log")
    console.setup_logging(log_file)
    terminal = io.StringIO()
    handler = next(h for h in root.handlers if not isinstance(h, logging.FileHandler))
    handler.setStream(terminal)
    yield terminal, log_file
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)
    absl_logging.set_verbosity(saved_verbosity)


def test_component_lines_survive_a_savedmodel_export(captured, tmp_path):
    """TensorFlow's export restores absl's verbosity flag after silencing it
    (autotrackable.py); with the flag unset that meant WARNING, and TFX's
    "Component X is running" (absl INFO) vanished for the rest of the run."""
    import tensorflow as tf

    terminal, log_file = captured
    absl_logging.info("Component Transform is running.")
    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(tmp_path / "saved"))  # what Transform and every Trainer do
    absl_logging.info("Component Transform is finished.")
    absl_logging.info("Component Pusher is running.")
    absl_logging.info("Component Pusher is finished.")
    absl_logging.info("Installing the user-code wheel")  # TFX chatter: the log file only
    shown = terminal.getvalue()
    for line in ("Transform ...", "Transform done in ", "Pusher ...", "Pusher done in "):
        assert line in shown, shown
    assert "Installing" not in shown
    with open(log_file) as handle:
        full = handle.read()
    assert "Component Pusher is finished." in full and "Installing the user-code wheel" in full


def test_quiet_run_sends_subprocess_walls_to_the_log_file(tmp_path, capfd):
    log_file = str(tmp_path / "run.log")
    with console.quiet_run(log_file):
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; print('setuptools wall', file=sys.stderr); print('pip wall')",
            ],
            check=True,
        )
    out, err = capfd.readouterr()
    assert "wall" not in out + err
    with open(log_file) as handle:
        assert {"setuptools wall", "pip wall"} <= set(handle.read().split("\n"))


def test_progress_logs_tenths_without_a_terminal(caplog):
    from components.progress import StepProgress

    progress = StepProgress("Trainer", 20, stream=io.StringIO())  # not a TTY: log lines, no bar
    with caplog.at_level(logging.INFO, logger="components.progress"):
        progress.on_train_begin()
        for step in range(20):
            progress.on_train_batch_end(step, {"loss": 0.5})
        progress.on_train_end()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "Trainer: training 20 steps"
    assert (
        "Trainer: step 1/20 (5%), loss 0.5000" in lines
        and "Trainer: step 19/20 (95%), loss 0.5000" in lines
    )
    assert lines[-1] == "Trainer: 20 training steps done" and len(lines) == 12
