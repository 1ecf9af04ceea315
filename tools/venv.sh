# shellcheck shell=bash
# Source this file (do not run it) to get an activated virtual environment
# with requirements.txt installed:
#
#   . tools/venv.sh || exit 1
#
# VENV    where the environment lives (default: <repo>/.venv). Point it at an
#         existing environment to reuse it, e.g. VENV=/work/venv.
# PYTHON  interpreter used to create a missing environment (default: python3.11).
#
# requirements.txt is (re)installed only when its sha256 differs from the one
# recorded in $VENV/.requirements.sha256 after the last successful install.
# After sourcing, REPO_ROOT and VENV are exported and $VENV/bin is first on PATH.

_camlib_venv_setup() {
    local root req stamp want have py
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
    export REPO_ROOT="$root"
    export VENV="${VENV:-$root/.venv}"
    req="$root/requirements.txt"
    stamp="$VENV/.requirements.sha256"
    py="${PYTHON:-python3.11}"

    if [[ ! -x "$VENV/bin/python" ]]; then
        command -v "$py" >/dev/null 2>&1 || {
            echo "venv.sh: $py not found; install Python 3.11 or set PYTHON=..." >&2
            return 1
        }
        echo "venv.sh: creating $VENV with $py"
        "$py" -m venv "$VENV" || { echo "venv.sh: could not create $VENV" >&2; return 1; }
        "$VENV/bin/python" -m pip install --quiet --upgrade pip || return 1
    fi

    [[ -f "$req" ]] || { echo "venv.sh: $req is missing" >&2; return 1; }
    want="$(sha256sum "$req" | cut -d' ' -f1)" || return 1
    have="$(cat "$stamp" 2>/dev/null || true)"
    if [[ "$want" != "$have" ]]; then
        echo "venv.sh: installing requirements.txt into $VENV"
        # requirements.txt holds `-e .`, which is relative to the repo root.
        (cd "$root" && "$VENV/bin/python" -m pip install -r requirements.txt) || {
            echo "venv.sh: pip install -r requirements.txt failed" >&2
            return 1
        }
        echo "$want" > "$stamp" || return 1
    else
        echo "venv.sh: requirements.txt unchanged since last install ($VENV)"
    fi

    # Activate: the notebooks' "python3" kernel then resolves to this Python.
    # shellcheck disable=SC1091
    . "$VENV/bin/activate" || return 1
    hash -r 2>/dev/null || true
}

_camlib_venv_setup
