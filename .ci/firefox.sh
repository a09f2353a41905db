#!/usr/bin/env bash
# Install Debian's Firefox ESR (when missing) for the live header-layer test; it skips where
# Firefox is absent, and fails under CI without it.
set -euo pipefail
if ! command -v firefox-esr >/dev/null 2>&1 && ! command -v firefox >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends firefox-esr >&2
fi
(command -v firefox-esr >/dev/null 2>&1 && firefox-esr --version || firefox --version) >&2
