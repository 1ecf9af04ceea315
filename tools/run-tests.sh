#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#
#   bash tools/run-tests.sh [extra pytest options]
#
# 1. the strict book build (tools/build-book.sh): executes every notebook, fails on any warning
#    or cell error;
# 2. pytest: camlib's unit tests (tests/) and every notebook under nbval (notebooks/), whose
#    hidden assert cells check the chapters' claims.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash "$ROOT/tools/build-book.sh"

# shellcheck source=tools/venv.sh
. "$ROOT/tools/venv.sh" >/dev/null || { echo "run-tests: environment setup failed" >&2; exit 1; }

echo "run-tests: pytest tests notebooks (nbval-lax)"
python -m pytest tests notebooks \
    --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
    --sanitize-with tests/sanitize.cfg -p no:cacheprovider "$@"
