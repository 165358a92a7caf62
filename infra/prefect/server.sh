#!/usr/bin/env bash
# A long-lived Prefect server (UI + API) on 127.0.0.1:4200 unless PREFECT_SERVER_API_HOST is set.
#   bash infra/prefect/server.sh &  export PREFECT_API_URL=http://127.0.0.1:4200/api
set -euo pipefail
cd "$(dirname "$0")/../.."
export PREFECT_SERVER_ANALYTICS_ENABLED=false
exec .venv/bin/prefect server start --host "${PREFECT_SERVER_API_HOST:-127.0.0.1}" --port "${PREFECT_PORT:-4200}"
