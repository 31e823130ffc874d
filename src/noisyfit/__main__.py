"""``python -m noisyfit`` runs the ``noisyfit`` command."""

import sys

try:
    from noisyfit.cli import main
except KeyboardInterrupt:  # Ctrl-C while the command starts up
    print("noisyfit: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
