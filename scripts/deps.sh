#!/usr/bin/env bash
# Install the Debian packages the dialer needs to build, test and run.
# Idempotent: when every package is already installed it makes no apt call at all.
set -euo pipefail

PACKAGES=(
    # build
    build-essential pkg-config
    libevent-dev libhiredis-dev libpq-dev libjansson-dev libjwt-dev
    libcurl4-openssl-dev libcmocka-dev libcrypt-dev libssl-dev
    libzip-dev libexpat1-dev libxlsxwriter-dev
    # dialer-events' WebSocket server (and the tests' WebSocket client)
    libwebsockets-dev
    # servers and the supervisor used by `make run` / `make test`
    postgresql postgresql-contrib redis-server redis-tools supervisor
    # tools the scripts call (curl, openssl, ss, runuser/flock, timeout/mktemp, ps)
    curl ca-certificates openssl iproute2 util-linux coreutils procps
    # time zones (TIMEZONE, default Asia/Tehran)
    tzdata
)

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: not a Debian system (no dpkg-query); install the equivalents of:" >&2
    echo "  ${PACKAGES[*]}" >&2
    exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == installed ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "deps.sh: all ${#PACKAGES[@]} Debian packages present, nothing to install"
    exit 0
fi

SUDO=()
if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "deps.sh: run as root or install sudo" >&2; exit 1; }
    SUDO=(sudo)
fi

echo "deps.sh: installing: ${missing[*]}"

# Keep the packages' own services (system postgresql, redis-server, supervisor)
# from starting during the install: our scripts run their own instances on their
# own ports. A policy-rc.d that exits 101 is Debian's way to say "do not start";
# we add one only for the duration of the install and only if none exists.
POLICY=/usr/sbin/policy-rc.d
if [[ ! -e "$POLICY" ]]; then
    # shellcheck disable=SC2016
    "${SUDO[@]}" sh -c 'printf "#!/bin/sh\nexit 101\n" >"$1" && chmod 755 "$1"' _ "$POLICY"
    trap '"${SUDO[@]}" rm -f "$POLICY"' EXIT
fi

"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
echo "deps.sh: done"
