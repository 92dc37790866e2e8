#!/usr/bin/env bash
# Make (once) the Debian 12 guest images of the VM tests, from Debian's packages alone (mmdebstrap):
# cloud-init (NoCloud), sshd, python3 (+ pip), apparmor, sudo, DHCP on virtio-net (systemd-networkd).
# Two variants, each a qcow2 with the kernel and initrd for direct kernel boot beside it:
#   docker  Docker (docker.io) preinstalled and enabled
#   plain   no Docker: the docker_setup role installs it from Debian's packages inside the guest
#
# The images are cached under a version named after a hash of the recipe (the settings and the three
# functions below that build and describe an image, as bash prints them: comments do not count) and
# the mirrors: they are rebuilt only when the recipe changes, and only the newest
# MADCI_GUEST_IMAGE_KEEP versions are kept. Concurrent callers wait for one build (flock).
#
# Usage: ci/guest-image.sh [--json | --env | --version]
#   default    progress and the paths on stdout
#   --json     only the description (the content of <version>/image.json) on stdout, progress on stderr
#   --env      only shell assignments (the content of <version>/image.env) on stdout, progress on stderr
#   --version  only the version the recipe has now; nothing is built
#
# Environment:
#   MADCI_STATE                   state and logs (default /var/lib/madci)
#   MADCI_GUEST_IMAGE_DIR         the cache (default $MADCI_STATE/guest-image)
#   MADCI_GUEST_IMAGE_KEEP        versions kept (default 2)
#   MADCI_DEBIAN_MIRROR           default http://deb.debian.org/debian
#   MADCI_DEBIAN_SECURITY_MIRROR  default http://deb.debian.org/debian-security
#   MADCI_GUEST_IMAGE_COMPRESS    0 writes the qcow2 uncompressed (three times larger; default 1: zstd)
#   MADCI_GUEST_IMAGE_JOBS        1 builds the variants one after the other (default: both at once on
#                                 machines with two or more cores)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

MODE=text
case "${1:-}" in
  "") ;;
  --json) MODE="json" ;;
  --env) MODE="env" ;;
  --version) MODE="version" ;;
  *) echo "usage: $0 [--json | --env | --version]" >&2; exit 2 ;;
esac

MADCI_STATE=${MADCI_STATE:-/var/lib/madci}
CACHE=${MADCI_GUEST_IMAGE_DIR:-$MADCI_STATE/guest-image}
KEEP=${MADCI_GUEST_IMAGE_KEEP:-2}
MIRROR=${MADCI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${MADCI_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
COMPRESS=${MADCI_GUEST_IMAGE_COMPRESS:-1}
JOBS=${MADCI_GUEST_IMAGE_JOBS:-$(nproc)}
LOG_DIR=$MADCI_STATE/log

say() { if [ "$MODE" = text ]; then printf '[guest-image] %s\n' "$*"; else printf '[guest-image] %s\n' "$*" >&2; fi; }
die() { printf '[guest-image] error: %s\n' "$*" >&2; exit 1; }
case "$KEEP" in '' | *[!0-9]* | 0) die "MADCI_GUEST_IMAGE_KEEP must be a positive number, not '$KEEP'" ;; esac
case "$JOBS" in '' | *[!0-9]* | 0) die "MADCI_GUEST_IMAGE_JOBS must be a positive number, not '$JOBS'" ;; esac
case "$COMPRESS" in 0 | 1) ;; *) die "MADCI_GUEST_IMAGE_COMPRESS must be 0 or 1, not '$COMPRESS'" ;; esac

# ---- the recipe ------------------------------------------------------------------------------
SUITE=bookworm
DISK_SIZE=3G     # virtual size of the base; an overlay may be larger (cloud-init grows the filesystem)
# What a guest needs to be a VM-mode target: cloud-init, sshd, python3, sudo for the cloud-init user,
# apparmor (Debian's dockerd refuses every container without it), networking by DHCP (systemd-networkd
# is part of systemd; systemd-resolved feeds DHCP's DNS servers to /etc/resolv.conf).
# python3-pip: docker_setup can install the Docker SDK for Python with pip. python3-apt: Ansible's apt module
# (as in Debian's and Ubuntu's cloud images; without it the module installs it first).
PACKAGES=systemd-sysv,udev,systemd-resolved,openssh-server,python3,python3-pip,python3-apt,apparmor,cloud-init,sudo
# e2fsprogs: cloud-init grows the root filesystem to the overlay's size with resize2fs.
# The generic kernel, not the cloud one: Debian's cloud kernel has no AHCI driver, so the seed ISO on a
# SATA CD-ROM (where madengine_vm attaches it) would be invisible to cloud-init.
PACKAGES=$PACKAGES,linux-image-amd64,initramfs-tools,e2fsprogs,iproute2,netbase,ca-certificates,curl
# The docker image is ready for VM mode as it boots: the engine and Debian's Docker SDK for Python (what
# madengine_run uses in the guest); the plain image gets both from docker_setup.
DOCKER_PACKAGES=docker.io,python3-docker
# Module trees of hardware a VM never has (the generic kernel's modules are 400 MB unpacked).
MODULE_EXCLUDES="drivers/gpu drivers/media sound drivers/infiniband drivers/staging drivers/iio drivers/comedi
  drivers/net/wireless drivers/net/ethernet drivers/bluetooth net/bluetooth net/wireless net/mac80211 drivers/usb
  drivers/mtd drivers/hwmon drivers/isdn drivers/nfc drivers/input/touchscreen drivers/misc drivers/platform"
# The initramfs only has to find an ext4 root on a virtio disk: a short list of modules keeps it small.
INITRAMFS_MODULES="virtio_pci virtio_blk virtio_net ext4"
# Kernel command line for direct kernel boot. quiet + loglevel: a serial console is slow under emulation;
# mitigations=off: the guest is a throw-away test VM; tsc=reliable/no_timer_check: no clocksource
# fights under TCG; net.ifnames=0: the NIC is eth0.
KERNEL_ARGS="root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet loglevel=3 mitigations=off tsc=reliable no_timer_check"
# Timers and services a throw-away VM does not want (they compete with the benchmark for CPU and I/O).
DISABLE_UNITS="apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer fstrim.timer e2scrub_all.timer"
MASK_UNITS="apt-daily.service apt-daily-upgrade.service e2scrub_reap.service"
# Units that cost boot time under software emulation and do nothing in this guest (masked):
#   cloud-init-local.service             cloud-init's network stage finds the NoCloud seed as well (its
#                                        NoCloudNet source reads the same cidata disk); a drop-in orders it
#                                        where the local stage was. One Python start of cloud-init less
#                                        (each costs 4 s of the guest's CPU, 10-19 s while it boots)
#   cloud-config.service                 its modules run first in the final stage (cloud.cfg.d below):
#                                        one Python start less while dockerd starts and the first logins come
#   systemd-networkd-wait-online.service nothing in the guest needs a lease before it starts: cloud-init's
#                                        network stage, sshd and dockerd start while DHCP runs, and
#                                        madengine_vm waits for the lease and for SSH itself
#   systemd-modules-load.service         no module is listed to be loaded at boot (udev loads what devices
#                                        need; dockerd loads overlay, bridge and netfilter itself)
#   modprobe@{dm_mod,drm,efi_pstore,fuse,loop}.service, systemd-binfmt.service and
#   proc-sys-fs-binfmt_misc.automount    modules and mounts nothing here uses (0.5-5 s each while booting)
#   getty@tty1.service                   no screen: the serial console (ttyS0) keeps its getty
BOOT_MASK_UNITS="cloud-init-local.service cloud-config.service systemd-networkd-wait-online.service
  systemd-modules-load.service modprobe@dm_mod.service modprobe@drm.service modprobe@efi_pstore.service
  modprobe@fuse.service modprobe@loop.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount
  getty@tty1.service"
# Modules udev would load for the emulated machine's devices and CPU that a test VM never uses: KVM inside
# the guest (the emulated CPU announces SVM), the PC speaker, mouse and keyboard events, the chipset's
# SMBus, LPC and watchdog (blacklisted: not loaded by alias; a modprobe by name still loads them).
BOOT_BLACKLIST_MODULES="kvm kvm_amd kvm_intel ccp irqbypass pcspkr psmouse serio_raw evdev joydev i2c_i801
  i2c_smbus lpc_ich iTCO_wdt iTCO_vendor_support intel_pmc_bxt efi_pstore"

# ---- how an image is built ---------------------------------------------------------------------
# mmdebstrap bind-mounts /dev, /proc and /sys into the root while it works; a build killed by SIGKILL
# leaves them mounted. Unmount anything below a directory before removing it, and never cross into
# another filesystem.
remove_tree() {
  local dir=$1 mnt
  [ -e "$dir" ] || return 0
  dir=$(realpath "$dir")
  while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done < <(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r)
  rm -rf --one-file-system "$dir"
}

stop_jobs() {
  local pid
  for pid in $(jobs -p); do kill -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

write_files() {
  # $1: root directory, $2: variant
  local root=$1 variant=$2
  echo debian >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  echo '/dev/vda / ext4 defaults,noatime 0 1' >"$root/etc/fstab"
  : >"$root/etc/machine-id"   # empty: every VM gets its own id at first boot

  mkdir -p "$root/etc/systemd/network"
  cat >"$root/etc/systemd/network/20-madci-dhcp.network" <<'NET'
[Match]
Name=eth* en*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
NET
  ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
  # apt in the guest (docker_setup installs docker.io with it) fetches and parses no translations.
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/90madci-no-translations"

  cat >"$root/etc/cloud/cloud.cfg.d/90-madci.cfg" <<'CFG'
# NoCloud only (a seed ISO labelled cidata): no probing of cloud metadata services at boot.
datasource_list: [ NoCloud ]
# systemd-networkd brings eth0 up by DHCP; cloud-init does not render networking.
network: {config: disabled}
# Keep the image's apt sources (plain HTTP to the Debian mirror).
apt: {preserve_sources_list: true}
manage_etc_hosts: true
# No locale to generate (C.UTF-8 is built in).
locale: false
# Fresh host keys per VM; ed25519 alone is quick to make under software emulation.
ssh_deletekeys: true
ssh_genkeytypes: [ed25519]
ssh: {emit_keys_to_console: false}
# No boot loader in a directly booted guest.
grub_dpkg: {enabled: false}
# cloud-config.service is masked (one Python start less at boot): Debian's modules of the config stage
# run at the start of the final stage, in their order.
cloud_config_modules: []
cloud_final_modules: [snap, ssh-import-id, keyboard, locale, set-passwords, grub-dpkg, apt-pipelining,
  apt-configure, ntp, timezone, disable-ec2-metadata, runcmd, byobu,
  package-update-upgrade-install, fan, landscape, lxd, write-files-deferred, puppet, chef, mcollective,
  salt-minion, reset_rmc, refresh_rmc_and_interface, rightscale_userdata, scripts-vendor, scripts-per-once,
  scripts-per-boot, scripts-per-instance, scripts-user, ssh-authkey-fingerprints, keys-to-console,
  install-hotplug, phone-home, final-message, power-state-change]
CFG
  # Password logins are off already, in the file cloud-init writes for "ssh_pwauth: false" (madengine_vm's
  # seed says so): cloud-init then leaves sshd alone instead of restarting it while the first logins arrive.
  echo 'PasswordAuthentication no' >"$root/etc/ssh/sshd_config.d/50-cloud-init.conf"
  # AppArmor stays on (Docker's docker-default profile needs it); the profiles of programs this guest
  # does not run (dhclient, lsb_release, nvidia-modprobe) are not compiled at every boot.
  local profile
  for profile in sbin.dhclient lsb_release nvidia_modprobe; do
    if [ -f "$root/etc/apparmor.d/$profile" ]; then ln -sf "../$profile" "$root/etc/apparmor.d/disable/$profile"; fi
  done
  rm -f "$root"/etc/ssh/ssh_host_*
  mkdir -p "$root/etc/systemd/system/ssh.service.d"
  cat >"$root/etc/systemd/system/ssh.service.d/madci-hostkey.conf" <<'UNIT'
# Without a seed cloud-init makes no host keys: make one so that sshd still starts.
[Service]
ExecStartPre=/bin/sh -c 'ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key'
UNIT
  mkdir -p "$root/etc/systemd/journald.conf.d"
  printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/madci.conf"

  systemctl --root="$root" --quiet enable systemd-networkd.service systemd-resolved.service
  # shellcheck disable=SC2086
  systemctl --root="$root" --quiet disable $DISABLE_UNITS 2>/dev/null || true
  # shellcheck disable=SC2086
  systemctl --root="$root" --quiet mask $MASK_UNITS
  # shellcheck disable=SC2086
  systemctl --root="$root" --quiet mask $BOOT_MASK_UNITS
  local module
  for module in $BOOT_BLACKLIST_MODULES; do echo "blacklist $module"; done >"$root/etc/modprobe.d/madci-blacklist.conf"
  mkdir -p "$root/etc/systemd/system/cloud-init.service.d"
  cat >"$root/etc/systemd/system/cloud-init.service.d/madci-no-local-stage.conf" <<'UNIT'
# The local stage (cloud-init-local.service) is masked: this stage reads the seed, once the root
# filesystem is writable, as the local stage would have.
[Unit]
After=systemd-remount-fs.service
RequiresMountsFor=/var/lib/cloud
UNIT
  if [ "$variant" = docker ]; then
    [ -x "$root/usr/sbin/dockerd" ] || die "the docker variant has no /usr/sbin/dockerd"
    # Docker needs none of containerd's Kubernetes (CRI) plugin; Docker's own packages turn it off too.
    printf 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n' >"$root/etc/containerd/config.toml"
    mkdir -p "$root/etc/systemd/system/containerd.service.d"
    cat >"$root/etc/systemd/system/containerd.service.d/madci-early.conf" <<'UNIT'
# containerd needs nothing of cloud-init: it starts while cloud-init's network stage runs (every unit
# ordered after sysinit.target waits for that stage), so that dockerd, which still starts after it
# (its daemon.json may come from the seed), finds containerd running.
[Unit]
DefaultDependencies=no
After=local-fs.target systemd-tmpfiles-setup.service
Conflicts=shutdown.target
Before=shutdown.target
UNIT
  else
    [ ! -e "$root/usr/sbin/dockerd" ] || die "the plain variant must not contain dockerd"
  fi
}

build_variant() {
  # $1: build directory, $2: variant. Leaves disk.qcow2, vmlinuz, initrd.img and kernel-release in $1/$2.
  local build=$1 variant=$2 include=$PACKAGES root out kver
  [ "$variant" = docker ] && include=$include,$DOCKER_PACKAGES
  root=$build/$variant.root
  out=$build/$variant
  mkdir -p "$out"
  local start=$SECONDS excludes=() tree
  for tree in $MODULE_EXCLUDES; do
    excludes+=("--dpkgopt=path-exclude=/lib/modules/*/kernel/$tree/*" "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/$tree/*")
  done
  # eatmydata: dpkg without an fsync per file (removed again before the image is made)
  mmdebstrap --variant=apt --mode=root --format=directory --include="$include" \
    --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata "${excludes[@]}" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --essential-hook="mkdir -p \"\$1/etc/initramfs-tools/conf.d\" && echo MODULES=list >\"\$1/etc/initramfs-tools/conf.d/madci\" \
      && printf '%s\n' $INITRAMFS_MODULES >>\"\$1/etc/initramfs-tools/modules\"" \
    "$SUITE" "$root" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main" \
    >"$LOG_DIR/guest-image-$variant.log" 2>&1 \
    || { tail -30 "$LOG_DIR/guest-image-$variant.log" >&2; die "mmdebstrap failed for the $variant image (log: $LOG_DIR/guest-image-$variant.log)"; }
  local t_strap=$((SECONDS - start))
  write_files "$root" "$variant"
  kver=$(basename "$(ls -d "$root"/usr/lib/modules/*)")
  cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
  cp "$root/boot/initrd.img-$kver" "$out/initrd.img"
  echo "$kver" >"$out/kernel-release"
  # Inode tables and the journal are written now (zeros are free in the qcow2), not by the guest's
  # lazy-init thread at every boot.
  mkfs.ext4 -q -F -L madci-root -E lazy_itable_init=0,lazy_journal_init=0 -d "$root" "$build/$variant.raw" "$DISK_SIZE" \
    >/dev/null
  # zstd-compressed clusters: a third of the size, 4 s to write (zlib takes 23 s), no slower to boot.
  local compress=()
  [ "$COMPRESS" = 1 ] && compress=(-c -o compression_type=zstd)
  qemu-img convert -q "${compress[@]}" -O qcow2 "$build/$variant.raw" "$out/disk.qcow2"
  rm -f "$build/$variant.raw"
  remove_tree "$root"
  chmod 0644 "$out/disk.qcow2" "$out/vmlinuz" "$out/initrd.img"
  say "$variant image: $(du -h "$out/disk.qcow2" | cut -f1) qcow2, kernel $kver (mmdebstrap ${t_strap} s, total $((SECONDS - start)) s)"
}

describe() {
  # image.json and image.env of version directory $1
  local dir=$1 v kver first=1
  kver=$(cat "$dir/docker/kernel-release")
  {
    printf '{\n  "version": "%s",\n  "dir": "%s",\n  "distribution": "Debian 12 (%s)",\n' "$VERSION" "$dir" "$SUITE"
    printf '  "kernel_release": "%s",\n  "kernel_args": "%s",\n  "images": {\n' "$kver" "$KERNEL_ARGS"
    for v in docker plain; do
      [ $first = 1 ] || printf ',\n'
      first=0
      printf '    "%s": {"qcow2": "%s", "kernel": "%s", "initrd": "%s", "docker": %s, "virtual_size": %s}' \
        "$v" "$dir/$v/disk.qcow2" "$dir/$v/vmlinuz" "$dir/$v/initrd.img" "$([ $v = docker ] && echo true || echo false)" \
        "$(qemu-img info --output=json "$dir/$v/disk.qcow2" | awk -F'[:,]' '/"virtual-size"/ {gsub(/ /, "", $2); print $2; exit}')"
    done
    printf '\n  }\n}\n'
  } >"$dir/image.json"
  {
    echo "MADCI_GUEST_IMAGE_VERSION=$VERSION"
    echo "MADCI_GUEST_KERNEL_ARGS='$KERNEL_ARGS'"
    for v in docker plain; do
      local up=${v^^}
      echo "MADCI_GUEST_${up}_QCOW2=$dir/$v/disk.qcow2"
      echo "MADCI_GUEST_${up}_KERNEL=$dir/$v/vmlinuz"
      echo "MADCI_GUEST_${up}_INITRD=$dir/$v/initrd.img"
    done
  } >"$dir/image.env"
}

# ---- version: a hash of the recipe -------------------------------------------------------------
VERSION=deb12-$( {
  declare -p SUITE DISK_SIZE PACKAGES DOCKER_PACKAGES MODULE_EXCLUDES INITRAMFS_MODULES KERNEL_ARGS \
    DISABLE_UNITS MASK_UNITS BOOT_MASK_UNITS BOOT_BLACKLIST_MODULES MIRROR SECURITY_MIRROR COMPRESS
  declare -f write_files build_variant describe
} | sha256sum | cut -c1-12)
if [ "$MODE" = version ]; then echo "$VERSION"; exit 0; fi

for tool in mmdebstrap mkfs.ext4 qemu-img flock sha256sum dpkg-architecture; do
  command -v "$tool" >/dev/null || die "$tool is missing: run ci/setup-host.sh first"
done
[ "$(id -u)" = 0 ] || die "mmdebstrap builds the guest root as root: run as root"
DEST=$CACHE/$VERSION
mkdir -p "$CACHE" "$LOG_DIR"
exec 9>"$CACHE/.lock"
flock -w 1800 9 || die "another build of the guest images held $CACHE/.lock for 30 minutes"

for stale in "$CACHE"/.build-*; do
  if [ -e "$stale" ]; then say "removing an interrupted build: $stale"; remove_tree "$stale"; fi
done

if [ -f "$DEST/image.json" ]; then
  say "guest images $VERSION already built in $DEST"
else
  BUILD=$CACHE/.build-$VERSION-$$
  trap 'stop_jobs; remove_tree "$BUILD"' EXIT
  trap 'exit 130' INT TERM HUP
  mkdir -p "$BUILD"
  say "building guest images $VERSION (Debian $SUITE from $MIRROR; log: $LOG_DIR/guest-image-*.log)"
  start=$SECONDS
  if [ "$JOBS" -ge 2 ]; then
    # Each build is mostly one busy dpkg: two at once take little longer than one. Job control gives
    # each its own process group, so that an interrupted build stops mmdebstrap too.
    set -m
    build_variant "$BUILD" docker & docker_job=$!
    build_variant "$BUILD" plain & plain_job=$!
    set +m
    failed=0
    wait "$docker_job" || failed=1
    wait "$plain_job" || failed=1
    [ "$failed" = 0 ] || die "the guest images could not be built (see above)"
  else
    build_variant "$BUILD" docker
    build_variant "$BUILD" plain
  fi
  mkdir -p "$BUILD/out"
  mv "$BUILD/docker" "$BUILD/plain" "$BUILD/out/"
  remove_tree "$DEST"
  mv "$BUILD/out" "$DEST"
  describe "$DEST"
  remove_tree "$BUILD"
  trap - EXIT
  say "built $VERSION in $((SECONDS - start)) s"
fi
touch "$DEST/image.json"   # "last used": old versions go by it

# ---- keep the newest versions ------------------------------------------------------------------
n=0
while read -r json; do
  n=$((n + 1))
  if [ "$n" -gt "$KEEP" ]; then
    say "removing old guest images $(dirname "$json")"
    remove_tree "$(dirname "$json")"
  fi
done < <(ls -t "$CACHE"/deb12-*/image.json 2>/dev/null)

case $MODE in
  json) cat "$DEST/image.json" ;;
  env) cat "$DEST/image.env" ;;
  *) sed 's/^/[guest-image]   /' "$DEST/image.env" ;;
esac
