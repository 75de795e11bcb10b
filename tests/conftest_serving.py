"""Shared fixtures for the model server and web app tests (a pytest plugin).

``tests/test_serving_*.py`` and ``tests/test_webapp_*.py`` load it with
``pytest_plugins = ["conftest_serving"]`` (``tests/conftest.py`` belongs to the pipeline's
tests). The helpers these fixtures use live in ``tests/serving_helpers.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serving_helpers import MODEL_NAME, LiveServer, add_version, build_tiny_saved_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """One tiny SavedModel for the session (copy it to make versions)."""
    return build_tiny_saved_model(str(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture
def serving_root(tmp_path, tiny_model_dir):
    """A serving root holding version 1 of the tiny model."""
    root = tmp_path / "serving"
    add_version(root, 1, tiny_model_dir)
    return root


@pytest.fixture
def server_app(serving_root):
    """The model server's Flask app over ``serving_root``, version 1 already loaded."""
    from serving.server import create_app

    app = create_app(str(serving_root), start=False)
    app.extensions["model_store"].poll()
    yield app
    app.extensions["model_store"].stop()


@pytest.fixture
def live_model_server(server_app) -> Iterator[LiveServer]:
    """The model server listening on a free loopback port."""
    live = LiveServer(server_app)
    yield live
    live.close()


@pytest.fixture
def web_app_factory():
    """Builds web apps for tests (CSRF off unless asked)."""
    from webapp import create_app

    def make(**overrides):
        config = {
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
            "SECRET_KEY": "test",
            "MODEL_NAME": MODEL_NAME,
        }
        config.update(overrides)
        return create_app(config)

    return make


@pytest.fixture
def live_web(web_app_factory, live_model_server) -> Iterator[tuple[LiveServer, LiveServer]]:
    """The web app and the model server, both live on loopback ports."""
    web = LiveServer(web_app_factory(SERVER_URL=live_model_server.url))
    yield web, live_model_server
    web.close()
