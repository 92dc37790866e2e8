#!/usr/bin/env bash
# Build the collection's execution environment (examples/ee/execution-environment.yml) with ansible-builder on
# this machine, where the definition's base image (a registry this machine cannot reach) is replaced by one made
# here from Debian's packages. Only build arguments differ from what users build:
#
#   EE_BASE_IMAGE  madengine-ee-base:<recipe hash>  Debian 12 (mmdebstrap + docker import): apt, python3 with
#                                                  python3-venv, an empty venv /opt/ee-python (Debian's system
#                                                  Python refuses ensurepip and pip; a venv takes both), this
#                                                  machine's CA bundle (pip reaches PyPI through it)
#   PYCMD          /opt/ee-python/bin/python3       the definition's python_path (/usr/bin/python3.12 on CentOS)
#   PYPKG          python3                          the definition's package_system (python3.12 on CentOS)
#   PKGMGR         /usr/local/bin/ee-apt            a dnf-style front end for apt-get (install, clean), what
#                                                  ansible-builder's options.package_manager_path names; bindep.txt's
#                                                  platform:dpkg entries name the Debian packages
#
# Both images are cached: the base by a hash of its recipe (this file's recipe part and the mirrors), the EE by a
# hash of the base, the definition, the build arguments, ansible-builder's version and the collection's content
# (the tarball's file manifest). Older versions are removed when no container uses them. Concurrent callers wait
# for one build (flock).
#
# Usage: ci/ee-image.sh [--base] [--tarball PATH]
#   --base          make (or reuse) the base image only
#   --tarball PATH  the collection tarball to build into the EE (default: built now from this checkout)
# The image name is the last line on stdout; progress goes to stderr.
#
# Environment:
#   MADCI_STATE                   state, lock and logs (default /var/lib/madci)
#   MADCI_VENV                    the venv with ansible-builder and ansible-galaxy (default /opt/madci/venv)
#   MADCI_DEBIAN_MIRROR           default http://deb.debian.org/debian
#   MADCI_DEBIAN_SECURITY_MIRROR  default http://deb.debian.org/debian-security
#   MADCI_CA_BUNDLE               CA bundle copied into the base (default /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail
export LC_ALL=C.UTF-8
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)

BASE_ONLY=0
TARBALL=""
while [ $# -gt 0 ]; do
  case "$1" in
    --base) BASE_ONLY=1; shift ;;
    --tarball) TARBALL=${2:?--tarball needs a path}; shift 2 ;;
    *) echo "usage: $0 [--base] [--tarball PATH]" >&2; exit 2 ;;
  esac
done

MADCI_STATE=${MADCI_STATE:-/var/lib/madci}
MADCI_VENV=${MADCI_VENV:-/opt/madci/venv}
MIRROR=${MADCI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${MADCI_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CA_BUNDLE=${MADCI_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
LOG_DIR=$MADCI_STATE/log

say() { printf '[ee-image] %s\n' "$*" >&2; }
die() { printf '[ee-image] error: %s\n' "$*" >&2; exit 1; }

# ---- the recipe of the base ----------------------------------------------------------------------
SUITE=bookworm
BASE_REPO=madengine-ee-base
BASE_PACKAGES=python3,python3-venv,ca-certificates
VENV=/opt/ee-python
PKGMGR_PATH=/usr/local/bin/ee-apt
BASE_ENV="PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
EE_REPO=madengine-ee
DEFINITION=$SRC/examples/ee/execution-environment.yml

pkgmgr_script() {
  cat <<'SCRIPT'
#!/bin/sh
# dnf-style front end for apt-get: what ansible-builder's scripts run as $PKGMGR ("install -y PKGS",
# "install PKG -y", "clean all"). dnf-only options are accepted and ignored; anything else is refused.
set -eu
export DEBIAN_FRONTEND=noninteractive
command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
  install)
    packages=""
    skip=0
    for word in "$@"; do
      if [ "$skip" = 1 ]; then skip=0; continue; fi
      case "$word" in
        -y | --assumeyes | --nodocs) ;;
        --setopt | --enablerepo | --disablerepo) skip=1 ;;
        --setopt=* | --enablerepo=* | --disablerepo=*) ;;
        -*) echo "ee-apt: unsupported option '$word'" >&2; exit 2 ;;
        *) packages="$packages $word" ;;
      esac
    done
    [ -n "$packages" ] || exit 0
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $packages
    ;;
  clean)
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    ;;
  *)
    echo "usage: ee-apt install [-y] PACKAGE... | ee-apt clean all" >&2
    exit 2
    ;;
esac
SCRIPT
}

build_base() {
  # $1: the image name
  local name=$1 work=$WORK/base start=$SECONDS env_args=() pair
  mkdir -p "$work"
  pkgmgr_script >"$work/ee-apt"
  cp "$CA_BUNDLE" "$work/ca-certificates.crt"
  mmdebstrap --variant=apt --include="$BASE_PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook="upload $work/ee-apt $PKGMGR_PATH" \
    --customize-hook="chmod 755 \"\$1$PKGMGR_PATH\"" \
    --customize-hook="upload $work/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt" \
    --customize-hook="chroot \"\$1\" python3 -m venv --without-pip $VENV" \
    --customize-hook="rm -rf \"\$1\"/var/lib/apt/lists/* \"\$1\"/var/cache/apt/*.bin" \
    "$SUITE" "$work/rootfs.tar" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main" \
    >"$LOG_DIR/ee-base.log" 2>&1 \
    || { tail -30 "$LOG_DIR/ee-base.log" >&2; die "mmdebstrap failed (log: $LOG_DIR/ee-base.log)"; }
  for pair in $BASE_ENV; do env_args+=(-c "ENV $pair"); done
  docker import "${env_args[@]}" -c 'CMD ["/bin/bash"]' -c "LABEL org.rocm.madengine.ee-base=${name#*:}" \
    "$work/rootfs.tar" "$name" >/dev/null
  rm -rf "$work"
  say "made $name in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$name" | awk '{printf "%d MB", $1 / 1e6}'))"
}

drop_other_tags() {
  # $1: repository, $2: the tag to keep. An image a container still uses stays.
  local tag
  for tag in $(docker images "$1" --format '{{.Tag}}'); do
    [ "$tag" = "$2" ] || docker rmi "$1:$tag" >/dev/null 2>&1 || true
  done
}

BASE_VERSION=$( { declare -p SUITE BASE_PACKAGES VENV PKGMGR_PATH BASE_ENV MIRROR SECURITY_MIRROR
                  declare -f pkgmgr_script build_base; sha256sum "$CA_BUNDLE"; } | sha256sum | cut -c1-12)
BASE_IMAGE=$BASE_REPO:$BASE_VERSION

for tool in mmdebstrap docker flock sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing: run ci/setup-host.sh first"
done
[ -x "$MADCI_VENV/bin/ansible-builder" ] || die "$MADCI_VENV/bin/ansible-builder is missing: run ci/venv.sh first"
[ "$(id -u)" = 0 ] || die "mmdebstrap builds the base root as root: run as root"
mkdir -p "$LOG_DIR"
WORK=$(mktemp -d /var/tmp/madci-ee.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
exec 9>"$MADCI_STATE/ee-image.lock"
flock -w 1800 9 || die "another build held $MADCI_STATE/ee-image.lock for 30 minutes"

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  say "base $BASE_IMAGE already made"
else
  say "making the base $BASE_IMAGE from Debian $SUITE packages (log: $LOG_DIR/ee-base.log)"
  build_base "$BASE_IMAGE"
  drop_other_tags "$BASE_REPO" "$BASE_VERSION"
fi
if [ "$BASE_ONLY" = 1 ]; then echo "$BASE_IMAGE"; exit 0; fi

# ---- the EE ---------------------------------------------------------------------------------------
if [ -z "$TARBALL" ]; then
  TARBALL=$("$HERE/install-collection.sh" "$WORK/installed" "$WORK/dist" 2>>"$LOG_DIR/ee-build.log")
fi
[ -f "$TARBALL" ] || die "no collection tarball at $TARBALL"
BUILD_ARGS=(--build-arg "EE_BASE_IMAGE=$BASE_IMAGE" --build-arg "PYCMD=$VENV/bin/python3"
            --build-arg "PYPKG=python3" --build-arg "PKGMGR=$PKGMGR_PATH")
# The collection's content: the tarball's MANIFEST.json holds the checksum of its file manifest.
CONTENT=$(tar -xzOf "$TARBALL" MANIFEST.json | sha256sum | cut -c1-16)
EE_VERSION=$( { echo "$BASE_IMAGE $CONTENT ${BUILD_ARGS[*]}"; cat "$DEFINITION"
                "$MADCI_VENV/bin/ansible-builder" --version; } | sha256sum | cut -c1-12)
EE_IMAGE=$EE_REPO:$EE_VERSION
if docker image inspect "$EE_IMAGE" >/dev/null 2>&1; then
  say "execution environment $EE_IMAGE already built"
else
  mkdir -p "$WORK/ee"
  cp "$DEFINITION" "$WORK/ee/execution-environment.yml"
  cp "$TARBALL" "$WORK/ee/rocm-madengine.tar.gz"
  say "building the execution environment $EE_IMAGE with ansible-builder (log: $LOG_DIR/ee-build.log)"
  start=$SECONDS
  # --network=host: containers on the main engine's default bridge have no NAT here (PyPI, Debian's mirror)
  (cd "$WORK/ee" && "$MADCI_VENV/bin/ansible-builder" build --file execution-environment.yml \
      --context "$WORK/context" --tag "$EE_IMAGE" --container-runtime docker --verbosity 3 \
      "${BUILD_ARGS[@]}" --extra-build-cli-args="--network=host --label org.rocm.madengine.ee=$EE_VERSION") \
    >"$LOG_DIR/ee-build.log" 2>&1 \
    || { tail -40 "$LOG_DIR/ee-build.log" >&2; die "ansible-builder build failed (log: $LOG_DIR/ee-build.log)"; }
  say "built $EE_IMAGE in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$EE_IMAGE" | awk '{printf "%d MB", $1 / 1e6}'))"
  drop_other_tags "$EE_REPO" "$EE_VERSION"
fi
echo "$EE_IMAGE"
