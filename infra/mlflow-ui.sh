#!/usr/bin/env bash
# Open the MLflow UI on the local tracking store. Bound to 127.0.0.1 unless MLFLOW_HOST is set.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/mlflow ui \
  --backend-store-uri "${MLFLOW_TRACKING_URI:-sqlite:///$PWD/artifacts/mlflow.db}" \
  --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}"
