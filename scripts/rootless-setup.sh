#!/usr/bin/env bash
# What the rootless tests need, set up as root (install-deps.sh runs it): an unprivileged user
# with a subordinate uid/gid range of its own, and a venv of Debian's python3 outside /root
# (the project's Python may sit under a 0700 /root) holding a plain install of this checkout.
#   MINIBUILD_ROOTLESS_USER (default minibuild-rootless), MINIBUILD_ROOTLESS_VENV (default
#   /opt/minibuild-rootless): the tests read the same two variables.
set -euo pipefail
cd "$(dirname "$0")/.."
user=${MINIBUILD_ROOTLESS_USER:-minibuild-rootless}
venv=${MINIBUILD_ROOTLESS_VENV:-/opt/minibuild-rootless}
count=65536

id -u "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"

# A range above every range already given out in either file, so it overlaps none (but the
# 'containers' pool of --userns=auto, which takes the upper half of the id space).
next_free() {
    cat /etc/subuid /etc/subgid 2>/dev/null |
        awk -F: 'BEGIN { m = 100000 } NF >= 3 && $1 != "containers" { e = $2 + $3; if (e > m) m = e } END { print m }'
}
for kind in uid gid; do
    if ! grep -q "^$user:" "/etc/sub$kind" 2>/dev/null; then
        start=$(next_free)
        echo "== usermod --add-sub${kind}s $start-$((start + count - 1)) $user"
        usermod "--add-sub${kind}s" "$start-$((start + count - 1))" "$user"
    fi
done

# The pool root's `--userns=auto` builds and containers take 65536 ids each from (as podman's).
for kind in uid gid; do
    if ! grep -q "^containers:" "/etc/sub$kind" 2>/dev/null; then
        echo "== containers:2147483647:2147483648 >> /etc/sub$kind (--userns=auto)"
        echo "containers:2147483647:2147483648" >> "/etc/sub$kind"
    fi
done

# The host's /dev is left as it is: where /dev/net/tun is not 0666 (Debian's udev mode), rootless
# RUN steps and containers use the host network, with a warning (tests/integration/test_rootless).

echo "== venv $venv (minibuild for $user)"
[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
# Not editable: the checkout may be in a dir the user cannot read. pip always reinstalls a
# local dir, so a rerun picks up a changed checkout.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --root-user-action=ignore .
chmod -R a+rX "$venv"
