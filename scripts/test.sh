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
.venv/bin/python -m pip install -q -e '.[dev]' -c requirements/dev.lock

# The real Kubernetes components, built from their Go modules into offline bundles of two
# versions (about 16 minutes each cold on 2 cores, seconds once cached outside the checkout):
# the lab tests run them, and the upgrade test goes from the older to the newer.
if command -v go >/dev/null; then
  echo "== kubernetes artifacts (scripts/kubernetes-artifacts.sh)"
  start=$(date +%s)
  CLUSTERDECK_TEST_BUNDLE="$(PYTHON=.venv/bin/python bash scripts/kubernetes-artifacts.sh | tail -n 1)"
  export CLUSTERDECK_TEST_BUNDLE
  echo "bundle $CLUSTERDECK_TEST_BUNDLE ready in $(($(date +%s) - start)) s"
  # the minor before it, which the upgrade test starts from (as long again when cold)
  previous="$(PYTHON=.venv/bin/python bash scripts/kubernetes-artifacts.sh --versions | sed -n 2p)"
  if [ -n "$previous" ]; then
    start=$(date +%s)
    CLUSTERDECK_TEST_BUNDLE_PREVIOUS="$(PYTHON=.venv/bin/python bash scripts/kubernetes-artifacts.sh "$previous" | tail -n 1)"
    export CLUSTERDECK_TEST_BUNDLE_PREVIOUS
    echo "bundle $CLUSTERDECK_TEST_BUNDLE_PREVIOUS ready in $(($(date +%s) - start)) s"
  fi
fi

echo "== ruff"; .venv/bin/ruff check src tests bench scripts
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
