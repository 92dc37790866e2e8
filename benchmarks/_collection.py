"""Makes the installed rocm.madengine importable for a benchmark script.

The collection is looked up in MADCI_INSTALLED (set by ci/run-tests.sh), then in the collections
path the demo installs into (/opt/madci/collections).
"""

from __future__ import annotations

import os
import sys


def use_installed_collection():
    for candidate in (os.environ.get("MADCI_INSTALLED"), "/opt/madci/collections"):
        if candidate and os.path.isdir(os.path.join(candidate, "ansible_collections", "rocm", "madengine")):
            sys.path.insert(0, candidate)
            return os.path.join(candidate, "ansible_collections", "rocm", "madengine")
    raise SystemExit("rocm.madengine is not installed: run ./ci/run-demo.sh or set MADCI_INSTALLED")
