#!/usr/bin/env bash
# A Python virtualenv with the official Connect Python client (connect-openapi-client, pinned in
# requirements.txt), for the compatibility suite (crates/usageflow/tests/connect_client.rs).
#
#   deploy/compat/connect-client.sh install   create the virtualenv (first run only)
#   deploy/compat/connect-client.sh python    install if needed, print the interpreter's path
#
# Environment:
#   USAGEFLOW_CACHE_DIR   where the virtualenv lives (default: ~/.cache/usageflow)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
. "$here/../lib.sh"
venv="$cache_dir/connect-client-venv"
stamp="$venv/.requirements-$(sha256sum "$here/requirements.txt" | cut -c1-16)"

install() {
  [ -f "$stamp" ] && return 0
  echo "connect-client.sh: installing connect-openapi-client into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
  touch "$stamp"
}

case "${1:-}" in
  install) install ;;
  python) install; echo "$venv/bin/python" ;;
  *) echo "usage: $0 install|python" >&2; exit 2 ;;
esac
