#!/usr/bin/env bash
# A process worker for the `alignpipe-process` pool, then the deployments of prefect.yaml.
#   PREFECT_API_URL=http://127.0.0.1:4200/api bash infra/prefect/worker.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${PREFECT_API_URL:?point PREFECT_API_URL at the Prefect server (infra/prefect/server.sh)}"
.venv/bin/prefect work-pool create alignpipe-process --type process --overwrite >/dev/null
.venv/bin/prefect --no-prompt deploy --all
exec .venv/bin/prefect worker start --pool alignpipe-process
