#!/usr/bin/env bash
# Install Debian's Chromium (when missing) for the browser tests; they skip where it is absent.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends chromium >&2
fi
chromium --version >&2
