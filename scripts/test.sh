#!/usr/bin/env bash
# Install what the tests need (see setup.sh), then run the whole suite against real backends.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${CRMCORE_TEST_POSTGRES_URL:-}" ] && [ -f .postgres-url ]; then
    CRMCORE_TEST_POSTGRES_URL=$(cat .postgres-url)
    export CRMCORE_TEST_POSTGRES_URL
fi
exec .venv/bin/python -m pytest "$@"
