#!/usr/bin/env bash
# Install (when missing) and start PostgreSQL on loopback for the test run, with a role and a
# database for the tests. Prints the URL to use as EDGEFILTER_TEST_POSTGRES_URL.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
version=$(ls /etc/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main .* online"; then
  pg_ctlcluster "$version" main start >&2
fi
for _ in $(seq 50); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 0.2
done
as_postgres() { su postgres -c "$1" >&2; }
as_postgres "psql -qtc \"SELECT 1 FROM pg_roles WHERE rolname='edgefilter'\" | grep -q 1 || psql -qc \"CREATE ROLE edgefilter LOGIN PASSWORD 'edgefilter'\""
as_postgres "psql -qtc \"SELECT 1 FROM pg_database WHERE datname='edgefilter_test'\" | grep -q 1 || createdb -O edgefilter edgefilter_test"
echo "postgresql://edgefilter:edgefilter@127.0.0.1:5432/edgefilter_test"
