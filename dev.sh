#!/usr/bin/env bash
# The project's entry point on a fresh machine (Python 3.11+, pip, apt):
#   ./dev.sh demo   set everything up, then run the main job: a local pycorosync cluster, live
#   ./dev.sh test   set everything up, then run lint, type checks and the whole test suite
#   ./dev.sh soak   set everything up, then run the long seed sweeps and soak tests
#   ./dev.sh setup  only set up (.venv with pinned versions, system packages when root)
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(packages/knet packages/totem packages/executive packages/clients)

pick_python() {
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "$candidate"
            return
        fi
    done
    echo "dev.sh: Python 3.11 or newer is required" >&2
    exit 1
}

install_system_packages() {
    # The network-namespace system tests need iproute2 (ip netns, veth) and nftables
    # (packet loss where the kernel has no netem). Only root can install them; others
    # run the rest of the suite and those tests report why they did not run. corosync
    # provides the real tools (corosync-cmapctl...) that the tests run against our daemon.
    local missing=()
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v nft >/dev/null 2>&1 || missing+=(nftables)
    command -v corosync-cmapctl >/dev/null 2>&1 || missing+=(corosync)
    if ((${#missing[@]})) && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "dev.sh: installing ${missing[*]} with apt-get"
        local guard=""
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            # Install the corosync tools without starting a corosync service.
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            guard=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        if [[ -n $guard ]]; then rm -f /usr/sbin/policy-rc.d; fi
    fi
}

setup() {
    install_system_packages
    if [[ ! -x .venv/bin/python ]]; then
        "$(pick_python)" -m venv .venv
    fi
    local pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
    "${pip[@]}" install -c constraints.txt -r requirements-dev.txt
    local editable=()
    for package in "${PACKAGES[@]}"; do editable+=(-e "$package"); done
    "${pip[@]}" install --no-build-isolation -c constraints.txt "${editable[@]}"
}

case "${1:-}" in
    setup)
        setup
        ;;
    demo)
        setup
        shift
        exec .venv/bin/pycorosync-cluster "$@"
        ;;
    test)
        setup
        shift
        .venv/bin/ruff check .
        .venv/bin/ruff format --check .
        .venv/bin/mypy
        exec .venv/bin/python -m pytest -m "not soak" "$@"
        ;;
    soak)
        setup
        shift
        exec .venv/bin/python -m pytest -m soak "$@"
        ;;
    *)
        sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
