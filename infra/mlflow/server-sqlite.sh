#!/usr/bin/env bash
# MLflow tracking server for one person: sqlite runs + Model Registry, artifacts on local disk, served
# through the server (clients need no file access). Bound to 127.0.0.1 unless MLFLOW_HOST is set.
#   bash infra/mlflow/server-sqlite.sh &  export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p artifacts/mlflow-server
exec .venv/bin/mlflow server \
  --backend-store-uri "sqlite:///$PWD/artifacts/mlflow-server/mlflow.db" \
  --artifacts-destination "$PWD/artifacts/mlflow-server/artifacts" --serve-artifacts \
  --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}"
