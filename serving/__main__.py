"""``python -m serving --serving-root DIR``: the model server without the ``breastdx`` script."""

import sys

from serving.cli import main

sys.exit(main())
