#!/usr/bin/env bash
# Regenerates .sqlx/ (compile-time query metadata) from a scratch database built from
# migrations/. Run it after changing a sqlx::query! or a migration, and commit .sqlx/.
set -euo pipefail
cd "$(dirname "$0")/.."
admin=${QBO_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=qbo_sqlx_prepare_$$  # per process, so two checkouts can prepare at once
psql "$admin" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
url=$(python3 -c "import sys,urllib.parse as u;p=u.urlparse(sys.argv[1]);print(p._replace(path='/$db').geturl())" "$admin")
for f in migrations/*.sql; do psql "$url" -q -v ON_ERROR_STOP=1 -f "$f"; done
rm -rf .sqlx && mkdir .sqlx
touch src/lib.rs crates/*/src/lib.rs
SQLX_OFFLINE=false DATABASE_URL="$url" SQLX_OFFLINE_DIR="$PWD/.sqlx" cargo check --workspace --all-targets --quiet
psql "$admin" -qc "DROP DATABASE $db"
echo "wrote $(ls .sqlx | wc -l) query files to .sqlx/"
