#!/usr/bin/env bash
# One command for a newcomer (root, Debian 12): install everything, build the sample images,
# and show the history of the `RUN rm` demonstration.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-deps.sh

echo "== minibuild build sample_images/base -> base:1.0"
minibuild build -t base:1.0 sample_images/base
echo "== minibuild build sample_images/hello -> hello:1.0"
minibuild build -t hello:1.0 sample_images/hello
echo "== minibuild build sample_images/rm-demo -> rmdemo:1.0"
minibuild build -t rmdemo:1.0 sample_images/rm-demo
echo
echo "== minibuild images"
minibuild images
echo
echo "== minibuild history rmdemo:1.0"
minibuild history rmdemo:1.0
