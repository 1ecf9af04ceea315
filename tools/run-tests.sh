#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#
#   bash tools/run-tests.sh [extra pytest options]
#
# 1. the strict book build (tools/build-book.sh): executes every chapter once, with its hidden
#    assert cells (raise_on_error: a failing claim fails the build), and fails on any warning;
# 2. pytest over tests/: camlib's unit tests, the coursework grader (nbval on the exercise
#    notebooks) and the rendered pages in headless Chromium.
# The chapters are not executed a second time: the build is their test.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash "$ROOT/tools/build-book.sh"

# shellcheck source=tools/venv.sh
. "$ROOT/tools/venv.sh" >/dev/null || { echo "run-tests: environment setup failed" >&2; exit 1; }

echo "run-tests: pytest tests"
export CAM_BOOK_REQUIRE_BUILD=1  # the browser test fails, not skips, without the build
python -m pytest tests -p no:cacheprovider "$@"
