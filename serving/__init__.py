"""The TF-Serving-compatible model server (``breastdx serve``) and ``breastdx predict``.

Importing the package imports nothing heavy: ``serving.server`` and ``serving.model_store``
import TensorFlow, ``serving.gunicorn_app`` and ``serving.cli`` do not, so the web app
and gunicorn's master process stay TensorFlow-free.
"""
