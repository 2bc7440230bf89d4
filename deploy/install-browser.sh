#!/usr/bin/env bash
# Debian's Chromium and chromedriver for the dashboard's browser test (tests/browser/,
# tests/integration/test_dashboard_browser.py). Idempotent: does nothing when both exist.
# The browser comes from Debian's packages only; no test tool downloads one.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core
