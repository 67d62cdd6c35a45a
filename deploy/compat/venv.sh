#!/usr/bin/env bash
# Python virtualenvs with other people's software the compatibility tests drive:
#   connect-client  the official Connect Python client (connect-openapi-client), pinned in
#                   requirements.txt, for crates/usageflow/tests/connect_client.rs;
#   delta-readers   the Python `deltalake` package, Polars and DuckDB, pinned in
#                   delta-readers.txt, for tests/delta_tables.rs.
#
#   deploy/compat/venv.sh install [delta-readers]   create the virtualenv (first run only)
#   deploy/compat/venv.sh python [delta-readers]    install if needed, print its python
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
  *) echo "unknown virtualenv ${2}" >&2; exit 2 ;;
esac
stamp="$venv/.requirements-$(sha256sum "$requirements" | cut -c1-16)"

install() {
  [ -f "$stamp" ] && return 0
  echo "venv.sh: installing $(basename "$requirements") into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  touch "$stamp"
}

case "${1:-}" in
  install) install ;;
  python) install; echo "$venv/bin/python" ;;
  *) echo "usage: $0 install|python [connect-client|delta-readers]" >&2; exit 2 ;;
esac
