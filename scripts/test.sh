#!/usr/bin/env bash
# Runs the whole engram test suite from a clean checkout.
# It installs what the tests need first: a Python virtualenv under target/pyenv with the pinned
# official `hippocortex` SDK and the `mcp` package (tests/python/requirements.txt), checks the
# formatting and the lints (`cargo fmt --check`, `cargo clippy --all-targets -D warnings`), then
# starts a throwaway PostgreSQL cluster on loopback (scripts/pg_cluster.sh, installing PostgreSQL
# from Debian's packages when it is missing), builds once and runs the unit tests and the one
# integration test binary, then that binary again with every server on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/pyenv
if [ ! -x "$venv/bin/python" ] || ! cmp -s tests/python/requirements.txt "$venv/.requirements"; then
  echo "test.sh: preparing $venv (pinned Python packages)" >&2
  rm -rf "$venv"
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  cp tests/python/requirements.txt "$venv/.requirements"
fi
export ENGRAM_TEST_PYTHON="$PWD/$venv/bin/python"

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# A throwaway PostgreSQL cluster on loopback for the PostgreSQL tests (installed when missing).
ENGRAM_TEST_DATABASE_URL="$(scripts/pg_cluster.sh start)"
export ENGRAM_TEST_DATABASE_URL
trap 'scripts/pg_cluster.sh stop' EXIT
cargo test --locked --all-targets "$@"
# The integration suite again, every server on PostgreSQL (a database of its own per data dir).
ENGRAM_TEST_BACKEND=postgres cargo test --locked --test api "$@"
