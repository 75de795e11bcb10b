"""``python -m webapp --port 5000 --server URL``: the web app without the ``breastdx`` script."""

import sys

from webapp.cli import main

sys.exit(main(sys.argv[1:]))
