#!/usr/bin/env bash
# Install redis-server from Debian's packages when missing, for the Redis rate-counter tests
# (tests/redis_server.py starts its own server on a free port in a temporary directory).
set -euo pipefail
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq redis-server >&2
fi
