#!/usr/bin/env bash
# Every test: unit tests (no root needed) and root integration tests with the real plugins.
# pytest's "no tests ran" (exit 5) is a failure here, never a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "test.sh: pytest collected no tests: failing" >&2
  exit 1
fi
exit $rc
