#!/usr/bin/env bash
# Everything the test suite needs, installed from scratch and idempotent:
# Debian packages for the real backends, a PostgreSQL server, and .venv with crmcore[dev].
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v baresip >/dev/null || need+=(baresip-core)
command -v sipp >/dev/null || need+=(sip-tester)
command -v dovecot >/dev/null || need+=(dovecot-imapd)
command -v openssl >/dev/null || need+=(openssl)
command -v chromium >/dev/null || need+=(chromium)   # io: the HTML report is tested in headless Chromium
if ! command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# PostgreSQL: use the server on 127.0.0.1:5432 if one answers, else start Debian's cluster.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if [ -z "${CRMCORE_TEST_POSTGRES_URL:-}" ]; then
    if psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
        echo "postgresql://postgres@127.0.0.1:5432/test" > .postgres-url
    else
        # a stock Debian cluster: give the postgres role a password and make the test database
        su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
        su postgres -c "createdb test" 2>/dev/null || true
        echo "postgresql://postgres:postgres@127.0.0.1:5432/test" > .postgres-url
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# pip's output goes to a log and is shown only if the install fails
log=$(mktemp)
# plugin kit: the example third-party plugin (examples/crmcore-duckdb) is installed like any plugin
if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e '.[dev,docs]' \
        && .venv/bin/python -m pip install -q -e examples/crmcore-duckdb; } >"$log" 2>&1; then
    cat "$log"
    exit 1
fi
rm -f "$log"
