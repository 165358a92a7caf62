#!/usr/bin/env bash
# Start a local Ray head that pipeline runs can share (set RAY_ADDRESS=auto, or ray.address=auto).
# Without it, each `alignpipe run` starts and stops its own Ray instance.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/ray start --head --node-ip-address 127.0.0.1 --num-cpus "${RAY_NUM_CPUS:-$(nproc)}" \
  --num-gpus "${RAY_NUM_GPUS:-0}" --include-dashboard false "$@"
