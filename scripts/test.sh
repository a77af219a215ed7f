#!/usr/bin/env bash
# The one test command (README, Makefile and CI all call this): installs what the tests need
# on a fresh Debian machine, then runs lint, types, layer contracts and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_LIST=.ci/apt-packages.txt
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -f "$APT_LIST" ]; then
  missing=()
  while read -r pkg; do
    [ -z "$pkg" ] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done < <(grep -v '^#' "$APT_LIST")
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing apt packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'

echo "== ruff"; .venv/bin/ruff check src tests bench
echo "== mypy (strict, library)"; .venv/bin/mypy
echo "== import-linter (layers)"; .venv/bin/lint-imports
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
