#!/usr/bin/env bash
# System packages the test suite drives; .ci/run calls this before `make test`.
# Idempotent and quick when everything is already installed.
#   chromium     the dashboard test renders /dashboard headless through Playwright's Python
#                package with executable_path=/usr/bin/chromium (never `playwright install`)
#   fonts-dejavu-core  so the dashboard screenshot has readable text
set -euo pipefail

packages=(chromium fonts-dejavu-core)
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "ci_system_deps: ${packages[*]} already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "ci_system_deps: installed ${missing[*]}"
