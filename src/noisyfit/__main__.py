"""``python -m noisyfit`` runs the ``noisyfit`` command."""

import sys

from noisyfit.cli import main

sys.exit(main())
