#!/usr/bin/env bash
# Installs the system packages the build, the tests and the local stack need, when missing
# (Debian/Ubuntu; run as root or with sudo available). Safe to run again. `--browser` adds
# Chromium and ChromeDriver (the tests need them; the demo does not).
set -euo pipefail

need=()
command -v cc >/dev/null || need+=(build-essential)
command -v make >/dev/null || need+=(make)
command -v curl >/dev/null || need+=(curl)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v python3 >/dev/null || need+=(python3)
# With --browser: headless Chromium and ChromeDriver, for the portal's end-to-end tests
# (installed with their recommended packages: fonts among them).
browser=()
if [ "${1:-}" = "--browser" ]; then
  command -v chromium >/dev/null || browser+=(chromium)
  command -v chromedriver >/dev/null || browser+=(chromium-driver)
fi
if command -v python3 >/dev/null && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  need+=(python3-venv)
fi

if [ ${#need[@]} -eq 0 ] && [ ${#browser[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps.sh: installing ${need[*]} ${browser[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
if [ ${#need[@]} -gt 0 ]; then
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ ${#browser[@]} -gt 0 ]; then
  $sudo apt-get install -y -qq "${browser[@]}"
fi
