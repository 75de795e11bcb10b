"""The model server's defaults, named once; TensorFlow-free so the CLI can import them.

Read by ``serving.cli``, ``serving.model_store``, ``serving.batching`` and ``serving.server``,
and for where the server is and which model it serves by its clients too: the web app
(``webapp.DEFAULTS``) and ``breastdx predict`` (``breastdx_cli.predict``), so the three
cannot drift apart. Imports nothing: the web app's image copies this file alone.
"""

DEFAULT_PORT = 8501  # TF Serving's REST port
DEFAULT_HOST = "127.0.0.1"  # local only; a container passes --host 0.0.0.0
DEFAULT_POLL_SECONDS = 2.0  # TF Serving polls every 1 s; Pusher writes rarely
DEFAULT_NUM_VERSIONS = 3  # newest N versions stay loaded so the web app can go back to one
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_BATCH_TIMEOUT_S = 0.002  # waiting longer only adds latency on two cores
DEFAULT_BATCH_THREADS = 2
# The model `make demo` pushes (breastdx_core/configs.py names it breastdx-<task>, default
# task idc; tests/test_configs.py holds the two equal) at the address `make serve` uses.
DEFAULT_MODEL_NAME = "breastdx-idc"
DEFAULT_GRPC_PORT = 8500  # TF Serving's gRPC port
DEFAULT_SERVER_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
DEFAULT_GRPC_TARGET = f"{DEFAULT_HOST}:{DEFAULT_GRPC_PORT}"
