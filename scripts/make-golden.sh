#!/usr/bin/env bash
# make-golden.sh REV: builds fleetpki as of git revision REV, has it create a
# CA, enroll three devices (metadata lot=golden) and revoke one, on SQLite
# and on PostgreSQL, and keeps what it wrote as the golden databases of its
# schema version in cmd/fleetpki/testdata/golden/:
#   sqlite-vN/         the data directory (CA files, fleetpki.db)
#   postgres-vN.sql    pg_dump of the database, and postgres-vN-ca/ its CA
# TestUpgradeFromGolden migrates each forward with the current binary.
# Needs FLEETPKI_TEST_DATABASE_URL (a Postgres the script may create
# databases on). Run it once per released schema.
set -euo pipefail
rev=${1:?usage: $0 REV}
cd "$(dirname "$0")/.."
out=cmd/fleetpki/testdata/golden
work=$(mktemp -d)
trap 'git worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/src" "$rev" >/dev/null
(cd "$work/src" && go build -o "$work/fleetpki" ./cmd/fleetpki)
version=$(ls "$work/src/migrations/sqlite" | sed -n 's/^0*\([0-9]*\)_.*/\1/p' | sort -n | tail -1)
bin=$work/fleetpki

# populate DATA [--database-url URL]: the CA, three devices, one revoked.
populate() {
	local data=$1
	shift
	"$bin" serve --data-dir "$data" --http-addr 127.0.0.1:0 --https-addr 127.0.0.1:0 --mqtt-addr "" --log-format text "$@" 2>"$work/serve.log" &
	local pid=$!
	for _ in $(seq 100); do grep -q 'listener=https' "$work/serve.log" && break; sleep 0.2; done
	local https fp secret
	https=$(sed -n 's/.*listener=https addr=\([^ ]*\).*/\1/p' "$work/serve.log" | head -1)
	fp=$(sed -n 's/.*root_sha256=\([0-9a-f]*\).*/\1/p' "$work/serve.log" | head -1)
	secret=$("$bin" credential create --data-dir "$data" "$@" --name golden 2>/dev/null | tail -n1)
	for id in golden-1 golden-2 golden-3; do
		"$bin" enroll --server "https://$https" --fingerprint "$fp" --credential "$secret" --device-id "$id" \
			--metadata lot=golden --out "$work/devices/$id" >/dev/null 2>&1
	done
	"$bin" revoke --data-dir "$data" "$@" --device-id golden-2 --reason keyCompromise >/dev/null 2>&1
	sleep 2 # a CRL numbered after the revocation
	kill "$pid"
	wait "$pid" || true
}

mkdir -p "$out"
rm -rf "$out/sqlite-v$version"
populate "$out/sqlite-v$version"
rm -f "$out/sqlite-v$version/admin-password"

url=${FLEETPKI_TEST_DATABASE_URL:?set FLEETPKI_TEST_DATABASE_URL}
db=golden_v${version}_$$
psql "$url" -qAtc "CREATE DATABASE $db"
dburl=$(echo "$url" | sed "s#/[^/?]*\(?\|\$\)#/$db\1#")
rm -rf "$out/postgres-v$version-ca"
populate "$work/pgdata" --database-url "$dburl"
mkdir -p "$out/postgres-v$version-ca"
cp -r "$work/pgdata/ca" "$out/postgres-v$version-ca/"
pg_dump --no-owner --no-privileges "$dburl" >"$out/postgres-v$version.sql"
psql "$url" -qAtc "DROP DATABASE $db"
echo "golden databases of schema version $version written to $out"
