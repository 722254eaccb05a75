#!/usr/bin/env bash
# System programs the integration tests use (Prometheus, HAProxy, docker-compose's config check, Chromium
# for the web-page tests). `make test` (and so CI) runs this first. Installs what is missing with
# apt-get when this machine can (root or passwordless sudo); each test that needs a missing
# program skips with a message saying which.
set -uo pipefail
# iptables: netavark (podman's network stack) runs it to publish ports; without it every container
# start fails with "netavark: No such file or directory".
PACKAGES=(docker-compose prometheus haproxy chromium chromium-driver podman runc netavark aardvark-dns iptables debootstrap)
if ! command -v apt-get >/dev/null; then
    echo "system-deps: no apt-get here; install ${PACKAGES[*]} yourself or their tests skip" >&2
    exit 0
fi
MISSING=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || MISSING+=("$package")
done
[ ${#MISSING[@]} -gt 0 ] || exit 0  # all there: no apt-get update on every `make test`
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! sudo -n true 2>/dev/null; then
        echo "system-deps: ${MISSING[*]} missing, and no root or passwordless sudo to install them;" \
            "their tests skip (to install: sudo bash .ci/system-deps.sh)" >&2
        exit 0
    fi
    SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends "${MISSING[@]}" \
    || echo "system-deps: some packages could not be installed; their tests will be skipped" >&2
