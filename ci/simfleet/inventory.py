"""DIR/inventory.yml of a simulated fleet: a small YAML writer (no PyYAML on a bare python3)."""

from __future__ import annotations

import json
import os


def _scalar(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a YAML double-quoted scalar


def _lines(value, indent):
    pad = "  " * indent
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                out.append("%s%s:" % (pad, key))
                out += _lines(item, indent + 1)
            else:
                out.append("%s%s: %s" % (pad, key, "{}" if item == {} else "[]" if item == [] else _scalar(item)))
    else:
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = _lines(item, indent + 1)
                out.append("%s- %s" % (pad, nested[0].lstrip()))
                out += nested[1:]
            else:
                out.append("%s- %s" % (pad, _scalar(item)))
    return out


def dump(document, header=""):
    text = "".join("# %s\n" % line if line else "#\n" for line in header.splitlines())
    return text + "---\n" + "\n".join(_lines(document, 0)) + "\n"


def write_atomic(path, text, mode=0o644):
    temporary = "%s.tmp-%d" % (path, os.getpid())
    with open(temporary, "w") as handle:
        handle.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)
