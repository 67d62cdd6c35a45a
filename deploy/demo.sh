#!/usr/bin/env bash
# Runs Usageflow's main job end to end on embedded defaults:
# starts the local Kafka broker (installed from Maven Central on first use), uses a local
# directory as the object store, and runs the pipeline on the sample catalogue.
# The broker is left running for exploration; stop it with `deploy/stack.sh down`.
#
# Environment: USAGEFLOW_DEMO_DIR (default: data/demo) holds the lake and the workflow state;
# USAGEFLOW_DEMO_EVENTS (default 200000) is how many events the load generator produces.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/usageflow-target}"

"$here/install-deps.sh"
echo "== building usageflow (the test build: deploy/test.sh then reuses every artifact)"
# `cargo build -p usageflow` would resolve the dependencies' features without the test-only
# crates and build DataFusion, librdkafka and most of the rest a second time for the tests;
# building the workspace's tests builds the binary with the one feature set they share.
cargo test --workspace --locked --no-run --quiet
bin="$CARGO_TARGET_DIR/debug/usageflow"

echo "== starting the Kafka broker"
"$here/kafka/kafka.sh" start
bootstrap="$("$here/kafka/kafka.sh" bootstrap)"
demo_dir="${USAGEFLOW_DEMO_DIR:-data/demo}"
mkdir -p "$demo_dir"
export USAGEFLOW__KAFKA__BOOTSTRAP_SERVERS="$bootstrap"
# Each demo run uses its own topic, so the lake it builds matches what it produced.
run_id="$(date +%Y%m%d%H%M%S)"
export USAGEFLOW__KAFKA__TOPIC="usage-events-$run_id"
export USAGEFLOW__KAFKA__DEAD_LETTER_TOPIC="usage-events-$run_id-dlq"
export USAGEFLOW__KAFKA__GROUP_ID="usageflow-demo-$run_id"
export USAGEFLOW__STORE__URL="$demo_dir/lake-$run_id"

echo "== checking the broker and the object store"
"$bin" --config config/usageflow.toml doctor

echo "== the sample catalogue"
"$bin" --config config/usageflow.toml catalog check

echo "== producing metering events"
"$bin" --config config/usageflow.toml loadgen --events "${USAGEFLOW_DEMO_EVENTS:-200000}" --truth "$demo_dir/truth-$run_id.jsonl"

echo "== ingesting into the lake (stops once caught up with the topic)"
# Stops after 3 s without a new message once every partition is at its end; fails, naming the
# topic and its offsets, if no partition is assigned within 120 s.
"$bin" --config config/usageflow.toml --set ingest.metrics_listen= ingest --idle-exit-secs 3

echo "== the rejected events, per reason (usageflow dead-letters redrive sends them back once fixed)"
"$bin" --config config/usageflow.toml dead-letters summary

echo "== the lake"
"$bin" --config config/usageflow.toml lake status
"$bin" --config config/usageflow.toml lake totals | sort > "$demo_dir/lake-$run_id.jsonl"
echo "a few usage records:"
head -n 3 "$demo_dir/lake-$run_id.jsonl"
if cmp -s <(sort "$demo_dir/truth-$run_id.jsonl") "$demo_dir/lake-$run_id.jsonl"; then
  echo "== the lake's $(wc -l <"$demo_dir/lake-$run_id.jsonl") usage records equal the generated truth exactly"
else
  echo "== MISMATCH between the lake and the generated truth" >&2
  echo "the generator's truth has $(wc -l <"$demo_dir/truth-$run_id.jsonl") usage records, the lake $(wc -l <"$demo_dir/lake-$run_id.jsonl");" \
    "the first differences (< truth, > lake):" >&2
  diff <(sort "$demo_dir/truth-$run_id.jsonl") "$demo_dir/lake-$run_id.jsonl" | head -n 10 >&2 || true
  exit 1
fi

echo "== compiling this month's usage file for Fieldlink Connectivity (QT) and walking it through review"
month_start="$(date -u +%Y-%m-01)"
month_end="$(date -u -d "$month_start +1 month -1 day" +%Y-%m-%d)"
out="$("$bin" --config config/usageflow.toml files compile --product PRD-200-200-002 \
  --contract CRD-20001-10001-00001 --from "$month_start" --to "$month_end")"
echo "$out"
file_id="$(echo "$out" | head -n 1 | cut -d' ' -f1)"
"$bin" --config config/usageflow.toml files submit "$file_id"
"$bin" --config config/usageflow.toml files accept "$file_id" --note "checked by the demo"
echo "audit trail of $file_id:"
"$bin" --config config/usageflow.toml files history "$file_id"

echo "== SQL over the lake and the files (DataFusion)"
"$bin" --config config/usageflow.toml sql "SELECT product_id, count(*) AS record_rows, sum(event_count) AS events, \
CAST(sum(quantity) AS VARCHAR) AS quantity FROM usage_records GROUP BY product_id ORDER BY product_id"
"$bin" --config config/usageflow.toml sql "SELECT status, count(*) AS records, CAST(sum(usage) AS VARCHAR) AS usage \
FROM file_records WHERE usagefile_id = '$file_id' GROUP BY status"

echo "== billing export of the accepted records for the distributor"
"$bin" --config config/usageflow.toml export-billing --scope provider:PA-500-001 --product PRD-200-200-002 \
  --from "$month_start" --to "$month_end" --format csv --out "$demo_dir/billing-$run_id.csv"
head -n 3 "$demo_dir/billing-$run_id.csv" | cut -c1-160

echo "== the HTTP API (Connect usage API) with a vendor key"
export USAGEFLOW__API__KEYS_FILE="$demo_dir/api-keys-$run_id.toml"
key="$("$bin" --config config/usageflow.toml api-key add --account VA-200-002 --role vendor --name demo 2>/dev/null)"
provider_key="$("$bin" --config config/usageflow.toml api-key add --account PA-500-001 --role provider --name demo 2>/dev/null)"
port="${USAGEFLOW_DEMO_API_PORT:-18080}"
"$bin" --config config/usageflow.toml serve --listen "127.0.0.1:$port" 2>"$demo_dir/api-$run_id.log" &
api_pid=$!
trap 'kill "$api_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "GET /public/v1/usage/files?status=accepted"
curl -fsS -D - -H "Authorization: ApiKey $key" "http://127.0.0.1:$port/public/v1/usage/files?status=accepted&limit=1" \
  | grep -iE '^content-range|"id"' | cut -c1-200 | head -n 3 || true
curl -fsS -H "Authorization: ApiKey $key" "http://127.0.0.1:$port/public/v1/usage/records?usagefile.id=$file_id&limit=2" \
  | cut -c1-300
echo
echo "== the portals"
curl -fsS "http://127.0.0.1:$port/portal/" | grep -o '<title>[^<]*</title>'
for k in "$key" "$provider_key"; do
  curl -fsS -H "Authorization: ApiKey $k" "http://127.0.0.1:$port/public/v1/me" | grep -o '"role":"[a-z]*"'
done
curl -fsS -o /dev/null -w 'GET /portal/app.js: %{http_code}, %{size_download} bytes\n' "http://127.0.0.1:$port/portal/app.js"
if [ "${USAGEFLOW_DEMO_SERVE:-0}" = "1" ]; then
  echo "Open http://127.0.0.1:$port/portal/ and sign in with"
  echo "  vendor (Fieldlink):       $key"
  echo "  distributor (Northwind):  $provider_key"
  echo "Ctrl-C stops the server."
  wait "$api_pid" || true
else
  echo "(USAGEFLOW_DEMO_SERVE=1 deploy/demo.sh keeps the server running and prints keys to sign in with)"
fi
kill "$api_pid" 2>/dev/null || true
wait "$api_pid" 2>/dev/null || true
echo "== done: lake and files under $demo_dir/lake-$run_id"
