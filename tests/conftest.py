"""Test-wide settings.

OpenMP threads sleep instead of spinning while they wait (OMP_WAIT_POLICY=PASSIVE): on a
shared 2-core machine spinning threads can slow small torch ops down by orders of magnitude.
Set before torch is first imported.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Runs in tests skip the HTML report at the end of `train` unless a test turns it on
# (tests/test_product.py does, where the report is what is tested).
os.environ.setdefault("NOISYFIT_REPORT", "0")
