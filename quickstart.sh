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
echo "== the same result without the wasted 50 MB: one RUN, and a build stage"
minibuild build -f sample_images/rm-demo-fixed/Buildfile.one-run -t rmdemo:one-run sample_images/rm-demo-fixed
minibuild build -f sample_images/rm-demo-fixed/Buildfile.multi-stage -t rmdemo:multi-stage sample_images/rm-demo-fixed
echo
echo "== minibuild images"
minibuild images
echo
echo "== minibuild run --rm hello:1.0   (a container: its own thin upper dir over the image's layers)"
minibuild run --rm hello:1.0
echo
echo "== minibuild history rmdemo:1.0"
minibuild history rmdemo:1.0
echo
echo "== minibuild history rmdemo:one-run"
minibuild history rmdemo:one-run
echo
echo "== minibuild history rmdemo:multi-stage"
minibuild history rmdemo:multi-stage
