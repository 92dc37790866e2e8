# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
name: json_file
short_description: Read a JSON object from a file on the controller
version_added: 0.2.0
description:
  - Returns the JSON object a file on the controller holds, for example madengine's C(credential.json), so that a
    play can hand its content to a module as data instead of copying the file to the hosts.
  - A relative path is taken from the directory C(ansible-playbook) runs in, as the collection's role variables
    are (not from the C(files/) directories M(ansible.builtin.file) lookups search).
  - A file that is missing, not JSON or not a JSON object fails with a message naming the file (and the line of a
    syntax error), never its content.
author:
  - ROCm madengine maintainers (@rocm)
options:
  _terms:
    description: Paths of the files.
    type: list
    elements: str
    required: true
  what:
    description: What the file is, for the messages.
    type: str
    default: JSON file
notes:
  - Lookups run on the controller, whatever host the task is for. Use the value in a task with C(no_log) or in an
    option the module marks C(no_log) when the file holds secrets.
"""

EXAMPLES = r"""
---
- name: Build with the credentials of the controller's credential.json, written nowhere
  rocm.madengine.madengine_build:
    mad_root: /srv/MAD
    tags: [dummy]
    credentials: "{{ lookup('rocm.madengine.json_file', 'credential.json', what='credential file') }}"
"""

RETURN = r"""
_raw:
  description: The JSON object of each file.
  type: list
  elements: dict
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, load_json_file


def read_object(path, what="JSON file", cwd=None):
    """The JSON object of ``path`` (relative to ``cwd``, default the working directory)."""
    full = os.path.normpath(os.path.join(cwd or os.getcwd(), os.path.expanduser(path)))
    try:
        document = load_json_file(full, what)
    except MadengineError as exc:
        raise AnsibleLookupError(str(exc))
    if not isinstance(document, dict):
        raise AnsibleLookupError("%s %s must hold a JSON object, not %s." % (what, full, type(document).__name__))
    return document


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        what = self.get_option("what")
        return [read_object(term, what) for term in terms]
