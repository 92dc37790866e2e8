# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""A CustomModel compatible with the one MAD catalogues import, and the loader of get_models_json.py.

MAD trees write ``from madengine.utils.discover_models import CustomModel`` in their
``scripts/<dir>/get_models_json.py``.  Those files must load on a controller without madengine
installed, so while one is executed a stand-in ``madengine.utils.discover_models`` module serving
this class is placed in ``sys.modules``.  When a real madengine is installed its other submodules
stay importable (the stand-in packages point at its directories).
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import sys
import traceback
import types
import typing


@dataclasses.dataclass
class CustomModel:
    """A model defined in Python; field names and defaults follow madengine's catalogue format."""

    name: str
    dockerfile: str = ""
    dockercontext: str = ""
    scripts: str = ""
    url: str = ""
    cred: str = ""
    owner: str = ""
    data: str = ""
    n_gpus: str = "-1"
    timeout: int = 7200
    training_precision: str = ""
    tags: typing.List[str] = dataclasses.field(default_factory=list)
    args: str = ""
    multiple_results: str = ""
    skip_gpu_arch: str = ""

    def to_dict(self):
        return dataclasses.asdict(self)

    def update_model(self):
        """Hook for subclasses: adjust fields (paths relative to the scripts dir) once the model is selected.

        Changing ``name`` or ``tags`` here is not supported.
        """


_SHIM_NAMES = ("madengine", "madengine.utils", "madengine.utils.discover_models")


def _real_package_path(name):
    """Directories of an installed package ``name``, or an empty list (never imports it)."""
    try:
        spec = importlib.machinery.PathFinder.find_spec(name.split(".")[-1], _real_package_path_parent(name))
    except (ImportError, ValueError):
        return []
    if spec is None or spec.submodule_search_locations is None:
        return []
    return list(spec.submodule_search_locations)


def _real_package_path_parent(name):
    if "." not in name:
        return None
    return _real_package_path(name.rsplit(".", 1)[0]) or ["/nonexistent"]


_SHIMS = []


def _shim_modules():
    """The stand-in modules, made once per process (finding a real madengine costs file lookups)."""
    if not _SHIMS:
        _SHIMS.append(_make_shim_modules())
    return _SHIMS[0]


def _make_shim_modules():
    pkg = types.ModuleType("madengine")
    pkg.__path__ = _real_package_path("madengine")
    utils = types.ModuleType("madengine.utils")
    utils.__path__ = _real_package_path("madengine.utils")
    discover = types.ModuleType("madengine.utils.discover_models")
    discover.CustomModel = CustomModel
    pkg.utils = utils
    utils.discover_models = discover
    return {"madengine": pkg, "madengine.utils": utils, "madengine.utils.discover_models": discover}


class ScriptError(Exception):
    """get_models_json.py could not be executed; ``detail`` is the last traceback line."""

    def __init__(self, detail):
        super(ScriptError, self).__init__(detail)
        self.detail = detail


def load_custom_models(path):
    """Execute ``path`` (a get_models_json.py) and return what its ``list_models()`` returned.

    Raises ScriptError with a one-line reason when the file fails to load or run.  No bytecode
    is written next to the file: discovery never changes the catalogue.
    """
    saved = {name: sys.modules.get(name) for name in _SHIM_NAMES + ("get_models_json",)}
    saved_dont_write = sys.dont_write_bytecode
    sys.modules.update(_shim_modules())
    sys.dont_write_bytecode = True
    try:
        spec = importlib.util.spec_from_file_location("get_models_json", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # pylint: disable=broad-except
            # A SystemExit or KeyboardInterrupt from a catalogue script must not end the module.
            raise ScriptError(_last_line(exc))
        list_models = getattr(module, "list_models", None)
        if not callable(list_models):
            raise ScriptError("it does not define a list_models() function")
        try:
            return list_models()
        except BaseException as exc:  # pylint: disable=broad-except
            raise ScriptError("list_models() raised " + _last_line(exc))
    finally:
        sys.dont_write_bytecode = saved_dont_write
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def _last_line(exc):
    lines = traceback.format_exception_only(type(exc), exc)
    return lines[-1].strip() if lines else type(exc).__name__


_FIELD_NAMES = {}


def _field_names(cls):
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def custom_model_to_dict(obj):
    """The catalogue entry of a CustomModel (ours or madengine's), or None for anything else."""
    to_dict = getattr(obj, "to_dict", None)
    if isinstance(obj, CustomModel) and type(obj).to_dict is CustomModel.to_dict:
        # What asdict() returns, without its slow recursive copy: only lists need copying here.
        entry = dict((name, getattr(obj, name)) for name in _field_names(type(obj)))
        for key, value in entry.items():
            if isinstance(value, list):
                entry[key] = list(value)
        return entry
    if isinstance(obj, CustomModel) or (callable(to_dict) and dataclasses.is_dataclass(obj) and hasattr(obj, "name")):
        return dict(to_dict())
    return None
