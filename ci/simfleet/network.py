"""Bridges and address blocks of the simulated nodes, and the NAT rule that lets SSH nodes reach package mirrors.

Every extra Docker engine gets a bridge of its own with an address block chosen here, never docker0 and
never ``--bridge=none`` (a daemon started with the bridge disabled deletes docker0 of the network namespace
it runs in, under the main engine).  Blocks come from MADFLEET_POOL (default 10.213.0.0/16) and skip
every network this namespace already has an address or a route in.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os

from .system import FleetError, ok, run

POOL = os.environ.get("MADFLEET_POOL", "10.213.0.0/16")


def networks_in_use():
    """Networks of this namespace's addresses and routes (all tables)."""
    found = []
    for argv in (["ip", "-4", "-o", "addr", "show"], ["ip", "-4", "-o", "route", "show", "table", "all"]):
        for line in run(argv).splitlines():
            for word in line.split()[:4]:
                try:
                    found.append(ipaddress.ip_network(word, strict=False))
                except ValueError:
                    continue
    return [n for n in found if n.prefixlen > 0]


def allocate(prefixlen, seed):
    """A free ``prefixlen`` block of the pool, probed from a place ``seed`` chooses: its first address + prefix."""
    pool = ipaddress.ip_network(POOL)
    blocks = list(pool.subnets(new_prefix=prefixlen))
    used = networks_in_use()
    start = int(hashlib.sha1(seed.encode()).hexdigest(), 16) % len(blocks)
    for offset in range(len(blocks)):
        block = blocks[(start + offset) % len(blocks)]
        if not any(block.overlaps(n) for n in used):
            return "%s/%d" % (block.network_address + 1, prefixlen)
    raise FleetError("no free /%d block left in %s (set MADFLEET_POOL to another private range)" % (prefixlen, POOL))


def link_names():
    """Interfaces of the current network namespace (not /sys/class/net: under nsenter --net that is still the
    namespace /sys was mounted in)."""
    names = []
    for line in run(["ip", "-o", "link", "show"]).splitlines():
        words = line.split(":", 2)
        if len(words) == 3:
            names.append(words[1].strip().split("@", 1)[0])
    return names


def link_exists(name):
    return name in link_names()


def bridge_address(name):
    """``address/prefix`` of the bridge, or None."""
    if not link_exists(name):
        return None
    for line in run(["ip", "-4", "-o", "addr", "show", "dev", name]).splitlines():
        words = line.split()
        if "inet" in words:
            return words[words.index("inet") + 1]
    return None


def ensure_bridge(name, address=None, prefixlen=29, seed=None):
    """The bridge ``name`` with an address (``address``, or a free block); returns its ``address/prefix``."""
    current = bridge_address(name)
    if current and (address is None or current == address):
        run(["ip", "link", "set", name, "up"])
        return current
    if not link_exists(name):
        run(["ip", "link", "add", name, "type", "bridge"])
    address = address or allocate(prefixlen, seed or name)
    run(["ip", "addr", "flush", "dev", name])
    run(["ip", "addr", "add", address, "dev", name])
    run(["ip", "link", "set", name, "up"])
    return address


def delete_link(name):
    if link_exists(name):
        ok(["ip", "link", "del", name])


def links_with_prefix(prefix):
    return sorted(n for n in link_names() if n.startswith(prefix))


# ---- NAT for SSH nodes (their own network namespaces need the package mirrors and PyPI) -----------------

def _nat_rule(subnet, bridge, comment):
    return ["POSTROUTING", "-s", subnet, "!", "-o", bridge, "-m", "comment", "--comment", comment, "-j",
            "MASQUERADE"]


def ensure_nat(subnet, bridge, comment):
    """Masquerade traffic of ``subnet`` leaving by another interface; False when iptables is missing."""
    if not ok(["iptables", "--version"]):
        return False
    rule = _nat_rule(subnet, bridge, comment)
    if not ok(["iptables", "-w", "-t", "nat", "-C"] + rule):
        run(["iptables", "-w", "-t", "nat", "-A"] + rule)
    return True


def remove_nat(comment):
    """Delete every NAT rule carrying ``comment`` (one word), rules of a fleet whose state was lost included."""
    if not ok(["iptables", "--version"]):
        return
    for line in run(["iptables", "-w", "-t", "nat", "-S", "POSTROUTING"]).splitlines():
        words = line.split()
        if words[:1] == ["-A"] and "--comment" in words and words[words.index("--comment") + 1] == comment:
            ok(["iptables", "-w", "-t", "nat", "-D"] + words[1:])
