#!/usr/bin/env bash
# Runs Usageflow's main job end to end on embedded defaults:
# starts the local Kafka broker (installed from Maven Central on first use), uses a local
# directory as the object store, and runs the pipeline on the sample catalogue.
# The broker is left running for exploration; stop it with `deploy/stack.sh down`.
#
# Environment: USAGEFLOW_DEMO_DIR (default: data/demo) holds the lake and the workflow state.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/usageflow-target}"

"$here/install-deps.sh"
echo "== building usageflow"
cargo build --quiet -p usageflow --bin usageflow
bin="$CARGO_TARGET_DIR/debug/usageflow"

echo "== starting the Kafka broker"
"$here/kafka/kafka.sh" start
bootstrap="$("$here/kafka/kafka.sh" bootstrap)"
demo_dir="${USAGEFLOW_DEMO_DIR:-data/demo}"
mkdir -p "$demo_dir"
export USAGEFLOW__KAFKA__BOOTSTRAP_SERVERS="$bootstrap"
export USAGEFLOW__STORE__URL="$demo_dir/lake"

echo "== checking the broker and the object store"
"$bin" --config config/usageflow.toml doctor

echo "== the sample catalogue"
"$bin" --config config/usageflow.toml catalog check
