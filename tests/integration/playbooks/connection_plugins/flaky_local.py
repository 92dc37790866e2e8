# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The local connection, unreachable while the file named by $FLAKY_LOCAL_DOWN exists (tests drop a node's link)."""

from __future__ import annotations

import os

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection.local import DOCUMENTATION as LOCAL_DOCUMENTATION
from ansible.plugins.connection.local import Connection as LocalConnection

DOCUMENTATION = LOCAL_DOCUMENTATION.replace("name: local", "name: flaky_local", 1)


class Connection(LocalConnection):
    transport = "flaky_local"

    def exec_command(self, cmd, in_data=None, sudoable=True):
        down = os.environ.get("FLAKY_LOCAL_DOWN")
        if down and os.path.exists(down):
            raise AnsibleConnectionFailure("flaky_local: the link to this node is down")
        return super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
