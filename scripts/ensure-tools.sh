#!/usr/bin/env bash
# Make sure the system tools the deployment-pack tests need are installed (idempotent).
#
#   promtool  `promtool check rules` / `promtool test rules` on deploy/prometheus/ (Debian's
#             `prometheus` package; the Python validators come from requirements.lock instead)
#
# Installs with apt-get only when a tool is missing, without starting the Prometheus server the
# package also contains. Needs root (or sudo) the first time; a no-op afterwards.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "promtool is missing and installing it needs root: apt-get install prometheus" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "promtool is missing and this is not a Debian-like system: install Prometheus's" >&2
  echo "promtool (2.x) on PATH by other means" >&2
  exit 1
fi

# The package ships a Prometheus server with an init script: keep it from starting. Debian's
# policy-rc.d protocol (exit 101 = action forbidden) is honoured by invoke-rc.d and
# deb-systemd-invoke. An existing policy file is left alone.
policy=/usr/sbin/policy-rc.d
created_policy=false
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod 755 "$policy"
  created_policy=true
fi
cleanup() {
  if [ "$created_policy" = true ]; then
    "${as_root[@]}" rm -f "$policy"
  fi
}
trap cleanup EXIT

install() {
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends \
    prometheus >/dev/null
}

echo "installing promtool (Debian package prometheus)" >&2
if ! install; then
  # A fresh machine may have no package lists yet, or stale ones.
  "${as_root[@]}" apt-get update -q >/dev/null
  install
fi
command -v promtool >/dev/null 2>&1 || { echo "promtool still missing after install" >&2; exit 1; }
promtool --version 2>&1 | head -n 1 >&2
