#!/usr/bin/env bash
# Install crmcore in .venv and run the demo on the embedded SQLite default.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e '.[analytics]' >/dev/null 2>&1 || .venv/bin/python -m pip install -e '.[analytics]'
exec .venv/bin/crmcore demo "$@"
