"""The project's one error base: what a person did wrong, said in one line.

Every error that a user can cause and fix (bad settings, a missing folder, an unreachable
endpoint, a refused sign-in, a bad upload) derives from :class:`BreastdxError`. It carries
the process exit code the console scripts return and the HTTP status the web app and the
model server answer with. The console scripts (``breastdx``, the ``tfx`` CLI's kubeflow
engine) print ``error: <message>`` and exit with ``exit_code``; the Flask apps answer
``http_status`` with the message. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BreastdxError(Exception):
    """A user-fixable error: one line to stderr and ``exit_code``, or ``http_status``."""

    exit_code: int = 2
    http_status: int = 400


class UserError(BreastdxError, ValueError):
    """Bad input or settings. A ``ValueError`` too, so older ``except ValueError`` holds."""


class ServiceError(BreastdxError, RuntimeError):
    """A service the command depends on refused or failed (KFP API, model server)."""

    http_status = 502
