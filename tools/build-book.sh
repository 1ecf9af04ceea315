#!/usr/bin/env bash
# Build The CAM Book (static HTML) from a fresh checkout:
#
#   bash tools/build-book.sh [extra jupyter-book build options, e.g. --all]
#
# 1. creates/updates the virtual environment (tools/venv.sh; VENV=... to reuse one),
# 2. fetches the self-hosted ipywidgets JavaScript (tools/fetch-widget-js.sh),
# 3. runs a strict build (CAM_BOOK_STATIC=1, see below): every warning is an error, notebooks are executed
#    (results cached in _build/.jupyter_cache) and any cell error fails the build.
# Needs Python 3.11 and Node.js/npm (for step 2) on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# shellcheck source=tools/venv.sh
. "$ROOT/tools/venv.sh" || { echo "build-book: environment setup failed" >&2; exit 1; }

bash "$ROOT/tools/fetch-widget-js.sh"

# jupyter-cache keys a notebook's results on its own code cells only. The chapters' results
# also depend on camlib and cambook (code and package data), so a change there or to the
# requirements clears the cache.
stamp="$ROOT/_build/.camlib-sources.sha256"
sources="$(find "$ROOT/camlib" "$ROOT/cambook" -type f \( -name '*.py' -o -name '*.json' \) | sort | xargs cat "$ROOT/requirements.txt" \
           | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$sources" ]]; then
    if [[ -d "$ROOT/_build/.jupyter_cache" ]]; then
        echo "build-book: camlib changed; clearing the execution cache"
    fi
    # Sphinx reuses the pages of notebooks whose text did not change: drop them too, so
    # that every chapter is executed again.
    rm -rf "$ROOT/_build/.jupyter_cache" "$ROOT/_build/.doctrees"
    mkdir -p "$ROOT/_build" && echo "$sources" > "$stamp"
fi

# The chapters see this while executing: chapter 2's explorer then precomputes its views as
# HTML that works without a kernel (camlib/static_explorer.py) instead of a live widget.
export CAM_BOOK_STATIC=1
# CAM_BOOK_REPO_URL (optional, see README): the book's public repository; unset, the pages have
# no launch or repository buttons (book/_ext/cam_book_settings.py).
echo "build-book: CAM_BOOK_REPO_URL=${CAM_BOOK_REPO_URL:-<unset: no launch or repository buttons>}"

echo "build-book: jupyter-book build . -W -n --keep-going $*"
if ! jupyter-book build . -W -n --keep-going "$@"; then
    echo "build-book: FAILED (warnings count as errors; see the log above)" >&2
    exit 1
fi

echo "build-book: done. Open $ROOT/_build/html/index.html"
echo "build-book: (widgets load extra JS; if your browser blocks it over file://, run"
echo "            python -m http.server -d _build/html 8000 and open http://127.0.0.1:8000/)"
