#!/usr/bin/env bash
# System programs the integration tests use (Prometheus, docker-compose's config check, Chromium
# for the web-page tests). Installed with apt-get when this machine can; each test that needs a
# missing program skips with a message saying which.
set -uo pipefail
PACKAGES=(docker-compose prometheus chromium chromium-driver)
if ! command -v apt-get >/dev/null; then
    echo "system-deps: no apt-get here; install ${PACKAGES[*]} yourself or their tests skip" >&2
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" \
    || echo "system-deps: some packages could not be installed; their tests will be skipped" >&2
