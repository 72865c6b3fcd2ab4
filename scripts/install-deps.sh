#!/usr/bin/env bash
# Installs what minibuild and its tests need on Debian 12, as root: system tools, then the package.
set -euo pipefail
cd "$(dirname "$0")/.."

# slirp4netns: the default (private) network of RUN steps and containers; uidmap and
# python3-venv: rootless; debootstrap: the Debian base image of the apt-get tests; git: ADD of a
# git repository (and its tests' git daemon); tmux: the
# terminal the TTY progress test draws on (tests/integration/test_tty_progress.py).
packages=(busybox-static skopeo umoci oci-image-tool zstd pigz docker-registry apache2-utils podman buildah
          slirp4netns uidmap python3-venv debootstrap tmux git)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== pip install minibuild (with test extras)"
# A plain (non-editable) install: what users get, grammar shipped inside the package.
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore '.[test]'

# The sample base image is FROM scratch plus Debian's static busybox (no network needed).
install -D -m 0755 "$(command -v busybox)" sample_images/base/rootfs/bin/busybox

# Rootless: a test user with a subordinate id range and a venv it can read (tests/integration/
# test_rootless.py runs minibuild as that user).
bash scripts/rootless-setup.sh
