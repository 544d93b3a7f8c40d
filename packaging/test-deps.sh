#!/usr/bin/env bash
# System packages that `make test` runs for real: OpenSSH's server (the SSH tunnel tests
# start their own sshd on 127.0.0.1). Installed from the distribution's packages when
# missing and this user may (root with apt-get); otherwise the tests that need it say so
# (and fail under CI=true).
set -uo pipefail
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "Installing ${need[*]} for the SSH tests (apt-get)..."
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
           { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; }; then
        echo "warning: could not install ${need[*]}; the SSH tests will say so." >&2
    fi
    # The package may start its own sshd where systemd runs; the tests need none.
else
    echo "note: ${need[*]} missing; the SSH tests will be skipped (install: sudo apt-get install ${need[*]})." >&2
fi
exit 0
