#!/usr/bin/env bash
# The local stack: the Kafka broker and the S3-compatible server, together.
#
#   deploy/stack.sh up       install what is missing, start both, print their addresses
#   deploy/stack.sh down     stop both
#   deploy/stack.sh status   show both
#   deploy/stack.sh env      print `export` lines for the addresses the tests and the binary read
#                            (USAGEFLOW_TEST_KAFKA_BOOTSTRAP, USAGEFLOW_TEST_S3_ENDPOINT)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

case "${1:-}" in
  up)
    "$here/kafka/kafka.sh" start
    "$here/s3/s3.sh" start
    ;;
  down)
    rc=0
    "$here/kafka/kafka.sh" stop || rc=$?
    "$here/s3/s3.sh" stop || rc=$?
    exit $rc
    ;;
  status)
    rc=0
    printf 'kafka: '; "$here/kafka/kafka.sh" status || rc=$?
    printf 's3:    '; "$here/s3/s3.sh" status || rc=$?
    exit $rc
    ;;
  env)
    echo "export USAGEFLOW_TEST_KAFKA_BOOTSTRAP=$("$here/kafka/kafka.sh" bootstrap)"
    echo "export USAGEFLOW_TEST_S3_ENDPOINT=$("$here/s3/s3.sh" endpoint)"
    ;;
  *)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
