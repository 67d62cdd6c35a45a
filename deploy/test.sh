#!/usr/bin/env bash
# Runs the whole test suite against the real local stack:
# installs missing system packages (with headless Chromium for the portal's browser tests),
# starts the Kafka broker and the S3-compatible server (installing them on first use), installs
# the official Connect Python client, the Delta readers and Apache Spark with Delta Lake into
# virtualenvs (first use only),
# runs `cargo test --workspace --locked` (extra arguments are passed on), and stops the services
# it started, whatever happened.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."

"$here/install-deps.sh" --browser

started=0
if ! "$here/stack.sh" status >/dev/null 2>&1; then
  started=1
fi
cleanup() {
  if [ "$started" -eq 1 ]; then
    "$here/stack.sh" down || true
  fi
}
trap cleanup EXIT

"$here/stack.sh" up
# The official Connect Python client, the Delta readers and Spark, for the compatibility tests.
"$here/compat/venv.sh" install
"$here/compat/venv.sh" install delta-readers
"$here/compat/venv.sh" install spark
eval "$("$here/stack.sh" env)"
export USAGEFLOW_TEST_KAFKA_BOOTSTRAP USAGEFLOW_TEST_S3_ENDPOINT
cargo test --workspace --locked "$@"
