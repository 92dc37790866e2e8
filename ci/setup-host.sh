#!/usr/bin/env bash
# Prepare a Debian 12 host for rocm.madengine: Debian packages, a Docker engine, a loopback
# registry and a locally made base image. Idempotent: each step reuses what is already there.
# Works without systemd: dockerd and the registry then run as background daemons.
#
# Environment:
#   MADCI_STATE          state and logs (default /var/lib/madci)
#   MADCI_REGISTRY_ADDR  registry listen address (default 127.0.0.1:5000)
#   MADCI_EXTRA_PKGS     more Debian packages to install (space separated)
#   MADCI_FLEET_IMAGE    0 skips the SSH nodes' image of ci/simulated-fleet.sh (default 1)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DEBIAN_FRONTEND=noninteractive

MADCI_STATE=${MADCI_STATE:-/var/lib/madci}
MADCI_REGISTRY_ADDR=${MADCI_REGISTRY_ADDR:-127.0.0.1:5000}
LOG_DIR=$MADCI_STATE/log
mkdir -p "$LOG_DIR"

say() { printf '[setup-host] %s\n' "$*"; }

# ---- 1. Debian packages -------------------------------------------------------------------
PKGS="docker.io docker-registry busybox-static cgroupfs-mount curl iproute2 pkg-config libvirt-dev
      gcc make git shellcheck ${MADCI_EXTRA_PKGS:-}"
# VM lifecycle: libvirtd + QEMU (software emulation), qcow2 overlays, cloud-init seed ISOs, the test guest's
# initramfs and UEFI firmware. No kernel package: ci/libvirtd.sh unpacks one without installing it.
PKGS="$PKGS libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils genisoimage cpio ovmf"
# htpasswd (bcrypt) for the tests' throwaway registry that requires authentication
PKGS="$PKGS apache2-utils"
# ci/simulated-fleet.sh --ssh: the nodes' Debian image (mmdebstrap), SSH to them, NAT to package mirrors
PKGS="$PKGS mmdebstrap openssh-client iptables"
# The real Debian guest of the VM tests (ci/guest-image.sh): mmdebstrap (+ dpkg-architecture for its
# eatmydata hook), mkfs.ext4 -d; libvirt NAT networks (dnsmasq, iptables) and ssh into the guest.
PKGS="$PKGS mmdebstrap dpkg-dev e2fsprogs dnsmasq-base iptables openssh-client"
# The results database tests start their own PostgreSQL server (initdb/pg_ctl on a private port and directory);
# the report tests load the HTML report in headless Chromium through chromedriver.
PKGS="$PKGS postgresql chromium chromium-driver fonts-dejavu-core"
# Debian's postgresql package makes and starts a "main" cluster unless told not to: the tests need none.
if ! dpkg-query -W -f='${Status}' postgresql-common 2>/dev/null | grep -q 'install ok installed'; then
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/madci.conf
fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  say "installing Debian packages:$missing"
  rm -f /var/lib/man-db/auto-update   # the man-db trigger is the slowest part of an install
  apt-get update -q >"$LOG_DIR/apt-update.log" 2>&1 || { cat "$LOG_DIR/apt-update.log" >&2; exit 1; }
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 $missing \
    >"$LOG_DIR/apt-install.log" 2>&1 || { tail -40 "$LOG_DIR/apt-install.log" >&2; exit 1; }
else
  say "Debian packages already installed"
fi

# ---- 2. Docker engine ---------------------------------------------------------------------
engine_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if engine_up; then
  say "Docker engine already answering"
elif [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl start docker
else
  grep -q ' /sys/fs/cgroup' /proc/mounts || cgroupfs-mount
  # A pid file left by a killed daemon makes dockerd refuse to start.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  say "starting dockerd in the background (log: $LOG_DIR/dockerd.log)"
  nohup dockerd --iptables=false --ip-masq=false >"$LOG_DIR/dockerd.log" 2>&1 &
fi
for _ in $(seq 1 120); do engine_up && break; sleep 0.5; done
engine_up || { tail -40 "$LOG_DIR/dockerd.log" >&2 || true; echo "the Docker engine did not come up" >&2; exit 1; }

# ---- 3. registry on loopback --------------------------------------------------------------
registry_up() { curl -sf "http://$MADCI_REGISTRY_ADDR/v2/" >/dev/null; }
if registry_up; then
  say "registry already answering on $MADCI_REGISTRY_ADDR"
else
  REG_DIR=$MADCI_STATE/registry
  mkdir -p "$REG_DIR/data"
  cat >"$REG_DIR/config.yml" <<CONF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $REG_DIR/data}
  delete: {enabled: true}
http: {addr: $MADCI_REGISTRY_ADDR}
CONF
  say "starting the registry on $MADCI_REGISTRY_ADDR (log: $LOG_DIR/registry.log)"
  nohup docker-registry serve "$REG_DIR/config.yml" >"$LOG_DIR/registry.log" 2>&1 &
  echo $! >"$REG_DIR/pid"
  for _ in $(seq 1 40); do registry_up && break; sleep 0.25; done
  registry_up || { cat "$LOG_DIR/registry.log" >&2; echo "the registry did not come up" >&2; exit 1; }
fi

# ---- 4. base image (no Docker Hub: made from busybox-static and pushed to the registry) -----
# `bash` hands over to busybox's ash: MAD run scripts are started with `bash <script>`.
REG=${MADCI_REGISTRY_ADDR/127.0.0.1/localhost}
BASE_IMAGE=$REG/mad-base:busybox
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  R=$(mktemp -d)
  mkdir -p "$R/bin" "$R/etc" "$R/root" "$R/tmp" "$R/myworkspace"; chmod 1777 "$R/tmp"
  cp /bin/busybox "$R/bin/busybox"
  chroot "$R" /bin/busybox --install -s /bin
  printf '#!/bin/sh\nexec /bin/sh "$@"\n' >"$R/bin/bash"; chmod 755 "$R/bin/bash"
  echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
  printf 'root:x:0:\nvideo:x:44:\nrender:x:105:\n' >"$R/etc/group"
  tar -C "$R" -c . | docker import -c 'CMD ["/bin/sh"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$R"
  say "made $BASE_IMAGE"
fi
# `docker build --pull` needs the base in a registry it can reach.
docker push -q "$BASE_IMAGE" >/dev/null
# ---- 5. the SSH nodes' image of ci/simulated-fleet.sh (cached: rebuilt only when its recipe changes) ----
if [ "${MADCI_FLEET_IMAGE:-1}" = 1 ]; then
  "$HERE/simulated-fleet.sh" image
fi
say "host ready: Docker $(docker version --format '{{.Server.Version}}'), registry $MADCI_REGISTRY_ADDR, base $BASE_IMAGE"
