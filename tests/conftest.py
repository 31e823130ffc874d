"""Test-wide settings.

OpenMP threads sleep instead of spinning while they wait (OMP_WAIT_POLICY=PASSIVE): on a
shared 2-core machine spinning threads can slow small torch ops down by orders of magnitude.
Set before torch is first imported.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
