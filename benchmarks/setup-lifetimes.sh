#!/usr/bin/env bash
# The reference a user would otherwise pick: `lifetimes` 0.11.3 with the older numpy,
# pandas and scipy it pins, in a virtual environment of its own (.venv-lifetimes).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-lifetimes/bin/python ] || python3 -m venv .venv-lifetimes
.venv-lifetimes/bin/python -m pip install -q numpy==1.23.5 pandas==1.5.3 scipy==1.10.1 autograd dill lifetimes==0.11.3
