"""Looking for secrets in what a test run wrote: the files made or changed since a moment, and their content."""

from __future__ import annotations

import os
import stat


def files_since(root, started, limit=64 << 20):
    """Regular files under ``root`` modified since ``started`` (a time.time() value), small enough to read."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mtime >= started and st.st_size < limit and os.access(path, os.R_OK):
                yield path


def files_holding(secrets, paths):
    """``[(path, secret)]`` for every file of ``paths`` that holds one of ``secrets`` (vanished files are skipped)."""
    found = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:  # another test's file, gone meanwhile
            continue
        found.extend((path, secret) for secret in secrets if secret.encode() in data)
    return found
