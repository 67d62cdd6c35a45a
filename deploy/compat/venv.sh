#!/usr/bin/env bash
# Python virtualenvs with other people's software the compatibility tests drive:
#   connect-client  the official Connect Python client (connect-openapi-client), pinned in
#                   requirements.txt, for crates/usageflow/tests/connect_client.rs;
#   delta-readers   the Python `deltalake` package, Polars and DuckDB, pinned in
#                   delta-readers.txt, for tests/delta_tables.rs;
#   spark           Apache Spark (pyspark) with delta-spark, pinned in spark.txt, and the
#                   Delta jars from Maven Central in its jars/ directory, for the same test.
#
#   deploy/compat/venv.sh install [NAME]   create the virtualenv (first run only)
#   deploy/compat/venv.sh python [NAME]    install if needed, print its python
#
# Environment:
#   USAGEFLOW_CACHE_DIR   where the virtualenv lives (default: ~/.cache/usageflow)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
. "$here/../lib.sh"
case "${2:-connect-client}" in
  connect-client) requirements="$here/requirements.txt"; venv="$cache_dir/connect-client-venv" ;;
  delta-readers) requirements="$here/delta-readers.txt"; venv="$cache_dir/delta-readers-venv" ;;
  spark) requirements="$here/spark.txt"; venv="$cache_dir/spark-venv" ;;
  *) echo "unknown virtualenv ${2}" >&2; exit 2 ;;
esac
stamp="$venv/.requirements-$(sha256sum "$requirements" | cut -c1-16)"

install() {
  [ -f "$stamp" ] && return 0
  echo "venv.sh: installing $(basename "$requirements") into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  if [ "$(basename "$requirements")" = spark.txt ]; then
    # The Delta jars of the pinned delta-spark, from Maven Central, for `spark.jars`.
    local version maven=https://repo1.maven.org/maven2/io/delta
    version="$(sed -n 's/^delta-spark==//p' "$requirements")"
    mkdir -p "$venv/jars"
    for jar in "delta-spark_2.12/$version/delta-spark_2.12-$version.jar" "delta-storage/$version/delta-storage-$version.jar"; do
      curl -fsSL --retry 3 -o "$venv/jars/$(basename "$jar")" "$maven/$jar"
    done
  fi
  touch "$stamp"
}

case "${1:-}" in
  install) install ;;
  python) install; echo "$venv/bin/python" ;;
  *) echo "usage: $0 install|python [connect-client|delta-readers|spark]" >&2; exit 2 ;;
esac
