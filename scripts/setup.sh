#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for resync: system packages (MariaDB, OpenSSH, HAProxy,
# netcat, pv, sysbench), a virtualenv in .venv and the package with its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

PACKAGES=(mariadb-server mariadb-client mariadb-backup openssh-server haproxy netcat-openbsd
          socat pv sysbench openssl iproute2 tar python3-venv zstd lz4 procps util-linux
          openssh-client nginx-light)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  # services must not start on install (the sandbox runs its own mariadbd instances); the
  # policy that holds them back is gone again once apt-get is done, whatever happened
  $SUDO bash scripts/hold-services.sh env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
