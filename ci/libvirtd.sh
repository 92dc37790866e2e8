#!/usr/bin/env bash
# Start virtlogd + libvirtd without systemd (QEMU in software emulation) and prepare a tiny guest
# (a Debian kernel taken out of its .deb without installing it, plus a busybox initramfs) for the
# VM lifecycle tests. Idempotent: a running daemon and a prepared guest are reused.
#
# Environment:
#   MADCI_STATE      state and logs (default /var/lib/madci)
#   MADCI_GUEST_DIR  where the guest kernel and initramfs go (default /var/cache/madci/guest)
#   MADCI_LIBVIRTD   set to 0 to only prepare the guest
# Prints nothing but progress lines; exits non-zero when the daemon does not answer.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

MADCI_STATE=${MADCI_STATE:-/var/lib/madci}
GUEST_DIR=${MADCI_GUEST_DIR:-/var/cache/madci/guest}
LOG_DIR=$MADCI_STATE/log
URI=qemu:///system
mkdir -p "$LOG_DIR" "$GUEST_DIR"

say() { printf '[libvirtd] %s\n' "$*"; }

for tool in libvirtd virtlogd virsh qemu-system-x86_64 qemu-img genisoimage cpio busybox; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run ci/setup-host.sh first" >&2; exit 1; }
done

# ---- 1. the guest: kernel from the linux-image .deb, busybox initramfs ------------------------
# Kernel modules the guest loads, in dependency order is worked out below from each module's
# .modinfo "depends=" entry (the .deb ships no modules.dep; depmod runs at install time).
GUEST_MODULES="virtio_pci virtio_net virtio_blk ahci sr_mod isofs"
STAMP=$GUEST_DIR/.ready-v1
if [ -f "$STAMP" ] && [ -f "$GUEST_DIR/vmlinuz" ] && [ -f "$GUEST_DIR/initramfs.gz" ]; then
  say "guest already prepared in $GUEST_DIR"
else
  W=$(mktemp -d)
  trap 'rm -rf "$W"' EXIT
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  if [ -z "$pkg" ]; then
    apt-get update -q >"$LOG_DIR/apt-update-guest.log" 2>&1
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
  fi
  say "downloading $pkg (not installed: only its kernel and a few modules are used)"
  (cd "$W" && apt-get download -q "$pkg" >"$LOG_DIR/apt-download-guest.log" 2>&1) \
    || { cat "$LOG_DIR/apt-download-guest.log" >&2; exit 1; }
  dpkg-deb -x "$W"/"$pkg"_*.deb "$W/pkg"
  kver=$(ls "$W/pkg/lib/modules")
  R=$W/initramfs
  mkdir -p "$R/bin" "$R/dev" "$R/proc" "$R/sys" "$R/mnt" "$R/modules" "$R/etc"
  cp "$(command -v busybox)" "$R/bin/busybox"
  for applet in sh mount umount insmod ip ifconfig route udhcpc cat ls sleep poweroff echo grep sed \
                mkdir hostname awk head uname; do
    ln -s busybox "$R/bin/$applet"
  done
  python3 - "$W/pkg/lib/modules/$kver/kernel" "$R/modules" $GUEST_MODULES <<'PY'
"""Copy kernel modules and their dependencies; write modules/order (dependencies first)."""
import os
import shutil
import sys

tree, dest, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
paths = {}
for root, _dirs, files in os.walk(tree):
    for f in files:
        if f.endswith(".ko"):
            paths[f[:-3].replace("-", "_")] = os.path.join(root, f)


def depends(name):
    with open(paths[name], "rb") as handle:
        data = handle.read()
    at = data.find(b"\0depends=")
    if at < 0:
        return []
    value = data[at + 9:data.index(b"\0", at + 1)].decode()
    return [d.replace("-", "_") for d in value.split(",") if d]


order = []


def visit(name):
    if name in order:
        return
    for dep in depends(name):
        visit(dep)
    order.append(name)


for name in wanted:
    visit(name)
for name in order:
    shutil.copy(paths[name], os.path.join(dest, name + ".ko"))
with open(os.path.join(dest, "order"), "w") as handle:
    handle.write("\n".join(order) + "\n")
PY
  cat >"$R/udhcpc.sh" <<'SH'
#!/bin/sh
# udhcpc hook: configure the lease it got.
case "$1" in
  bound|renew)
    ifconfig "$interface" "$ip" netmask "$subnet" up
    [ -n "$router" ] && route add default gw "${router%% *}" dev "$interface"
    echo "$ip" >/lease ;;
esac
SH
  # The guest reports its address the way cloud-init does on the console (a "ci-info" row of the
  # net device table), reports the disks it sees and the seed's instance-id, then idles.
  cat >"$R/init" <<'SH'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "madengine-guest: init started, kernel $(uname -r)"
for m in $(cat /modules/order); do insmod /modules/$m.ko 2>/dev/null; done
sleep 1
ip link set lo up
dev=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
mac=$(cat /sys/class/net/$dev/address)
echo "madengine-guest: disks $(ls /sys/block | grep -v -e '^loop' -e '^ram' | sed -n '1h;1!H;${x;s/\n/ /g;p}')"
if mount -t iso9660 -o ro /dev/sr0 /mnt 2>/dev/null; then
  echo "madengine-guest: seed $(grep instance-id /mnt/meta-data)"
  umount /mnt
fi
ip link set "$dev" up
udhcpc -i "$dev" -s /udhcpc.sh -n -q -t 10 -T 1 >/dev/null 2>&1
addr=$(cat /lease 2>/dev/null)
echo "ci-info: | $dev | True | $addr | 255.255.255.0 | global | $mac |"
echo "madengine-guest: ready"
while :; do sleep 3600; done
SH
  chmod 755 "$R/init" "$R/udhcpc.sh"
  (cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 >"$W/initramfs.gz")
  cp "$W/pkg/boot/vmlinuz-$kver" "$GUEST_DIR/vmlinuz.tmp" && mv "$GUEST_DIR/vmlinuz.tmp" "$GUEST_DIR/vmlinuz"
  cp "$W/initramfs.gz" "$GUEST_DIR/initramfs.tmp" && mv "$GUEST_DIR/initramfs.tmp" "$GUEST_DIR/initramfs.gz"
  echo "$pkg" >"$STAMP"
  say "guest ready: $GUEST_DIR/vmlinuz ($kver), initramfs $(du -h "$GUEST_DIR/initramfs.gz" | cut -f1)"
fi

[ "${MADCI_LIBVIRTD:-1}" = 1 ] || exit 0

# ---- 2. libvirtd + virtlogd without systemd ---------------------------------------------------
daemon_up() { virsh -c "$URI" version >/dev/null 2>&1; }
if daemon_up; then
  say "libvirtd already answering on $URI"
  exit 0
fi
# The QEMU driver refuses to initialise unless the libvirt-qemu user and group exist, even when
# QEMU runs as root.
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null \
  || useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
# No AppArmor/SELinux labelling and no cgroups on this kind of machine; consoles go to plain files.
CONF=/etc/libvirt/qemu.conf
if ! grep -q '^# madci test host' "$CONF" 2>/dev/null; then
  [ ! -f "$CONF" ] || cp "$CONF" "$CONF.madci-orig"
  cat >"$CONF" <<'CONF'
# madci test host: QEMU in software emulation, no security driver, no cgroups.
user = "root"
group = "root"
security_driver = "none"
stdio_handler = "file"
cgroup_controllers = [ ]
CONF
fi
mkdir -p /var/lib/libvirt/images /var/log/libvirt/qemu /var/lib/libvirt/qemu/nvram /run/libvirt
for pidfile in /run/libvirtd.pid /run/virtlogd.pid; do
  if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then rm -f "$pidfile"; fi
done
[ -f /run/virtlogd.pid ] || virtlogd -d
[ -f /run/libvirtd.pid ] || libvirtd -d --pid-file /run/libvirtd.pid >>"$LOG_DIR/libvirtd.log" 2>&1
say "waiting for libvirtd (QEMU capability probe)"
for _ in $(seq 1 120); do daemon_up && break; sleep 0.5; done
daemon_up || { tail -20 "$LOG_DIR/libvirtd.log" >&2 || true; echo "libvirtd did not come up" >&2; exit 1; }
say "libvirtd ready: $(virsh -c "$URI" version 2>/dev/null | grep -i 'running hypervisor' || true)"
