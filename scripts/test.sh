#!/usr/bin/env bash
# The project's test command (README: `make test`): formatting, go vet,
# staticcheck (pinned), and the race-enabled tests, with a local PostgreSQL for
# the Postgres tests. `scripts/test.sh lint` runs only the static checks;
# `scripts/test.sh bench [regexp] [count]` runs the benchmarks (Postgres ones too).
#
# Postgres: the tests create (and drop) their own throw-away databases through
# the admin URL in FLEETPKI_TEST_DATABASE_URL. When it is unset, this script
# starts the local cluster if it is down and uses
# postgres://postgres@127.0.0.1:<port>/postgres. If no server can be reached,
# the Postgres tests skip — except with CI=true, where this script fails.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK=honnef.co/go/tools/cmd/staticcheck@v0.8.2
TEST_TIMEOUT=${TEST_TIMEOUT:-15m}

log() { printf '==> %s\n' "$*" >&2; }

lint() {
	log "gofmt"
	local unformatted
	unformatted=$(gofmt -l $(git ls-files --cached --others --exclude-standard '*.go'))
	if [ -n "$unformatted" ]; then
		printf 'gofmt: these files need formatting (run gofmt -w):\n%s\n' "$unformatted" >&2
		return 1
	fi
	log "go vet"
	go vet ./...
	log "staticcheck ($STATICCHECK)"
	go run "$STATICCHECK" ./...
	# The static build (make build, the Dockerfile) has no PKCS#11; it must
	# keep compiling. The tests below run the cgo (HSM-capable) build.
	log "CGO_ENABLED=0 go build"
	CGO_ENABLED=0 go build -o /dev/null ./cmd/fleetpki
}

# start_postgres starts the first local cluster if pg_lsclusters shows it
# down and prints its port. It tolerates running as root (pg_ctlcluster then
# switches to the cluster's owner) and machines without a local cluster.
start_postgres() {
	command -v pg_lsclusters >/dev/null 2>&1 || return 1
	local ver name port status
	read -r ver name port status _ < <(pg_lsclusters --no-header | head -n 1) || return 1
	case "$status" in
	online*) ;;
	*)
		log "starting PostgreSQL cluster $ver/$name"
		pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >&2 || return 1
		;;
	esac
	echo "$port"
}

# pg_reachable waits up to 30 s for the server behind the URL to answer a query.
pg_reachable() {
	local url=$1 i
	for i in $(seq 30); do
		if command -v psql >/dev/null 2>&1; then
			psql "$url" -qAtc 'select 1' >/dev/null 2>&1 && return 0
		else
			pg_isready -q -d "$url" 2>/dev/null && return 0
		fi
		sleep 1
	done
	return 1
}

# ensure_tools installs the Debian packages the interop tests drive (openssl,
# curl, Mosquitto and its clients, Chromium for the browser tests, SoftHSM2
# and OpenSC's pkcs11-tool for the HSM tests, nginx as the HTTP cache in
# front of OCSP responders) when they
# are missing and apt-get can run (as root or with password-less sudo), so
# `make test` works on a fresh machine. Otherwise it says what is missing;
# the tests that need a missing tool then fail (or, for Chromium outside CI,
# skip) with the same message.
# ensure_nats installs NATS server v2.15.2 with go install (it is not a
# Debian package at that version) for the interop test of brokers that ask
# OCSP themselves.
ensure_nats() {
	local bin
	bin="$(go env GOPATH)/bin/nats-server"
	if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q 'v2.15.2'; then
		return 0
	fi
	log "installing nats-server v2.15.2 (go install)"
	GOFLAGS= go install github.com/nats-io/nats-server/v2@v2.15.2
}

ensure_tools() {
	local missing=()
	command -v openssl >/dev/null 2>&1 || missing+=(openssl)
	command -v curl >/dev/null 2>&1 || missing+=(curl)
	command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
	command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
	[ -x /usr/bin/chromium ] || missing+=(chromium)
	[ -f /usr/lib/softhsm/libsofthsm2.so ] || missing+=(softhsm2)
	command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
	command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
	[ "${#missing[@]}" -eq 0 ] && return 0
	local sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
			sudo="sudo -n"
		else
			log "missing ${missing[*]} (install them with apt-get); tests that need them will not pass"
			return 0
		fi
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		log "missing ${missing[*]} and no apt-get here; tests that need them will not pass"
		return 0
	fi
	log "installing ${missing[*]}"
	$sudo apt-get update -qq >&2
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

setup_postgres() {
	if [ -z "${FLEETPKI_TEST_DATABASE_URL:-}" ]; then
		local port
		port=$(start_postgres) || port=5432
		FLEETPKI_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable"
	fi
	if pg_reachable "$FLEETPKI_TEST_DATABASE_URL"; then
		export FLEETPKI_TEST_DATABASE_URL
		log "Postgres tests use $(sed -E 's#//([^:@/]*):[^@/]*@#//\1:***@#' <<<"$FLEETPKI_TEST_DATABASE_URL")"
		return 0
	fi
	if [ "${CI:-}" = true ]; then
		echo "test.sh: PostgreSQL cannot be reached and CI=true: the Postgres tests must run in CI" >&2
		return 1
	fi
	log "PostgreSQL cannot be reached: the Postgres tests will be skipped"
	unset FLEETPKI_TEST_DATABASE_URL
}

# fuzz runs each fuzz target of a security-relevant path briefly (FUZZTIME,
# default 8s each): CSR, device-id, serial, OCSP request and response
# parsing, the broker's ACL and CONNECT checks, the edge's text check, the
# sign-in redirect and the enrollment body. Longer runs:
# FUZZTIME=10m scripts/test.sh fuzz.
fuzz() {
	local t=${FUZZTIME:-8s} target pkg
	for target in ca:FuzzParseCSR pki:FuzzValidateDeviceID pki:FuzzParseSerial pki:FuzzValidateServiceName ocspresponder:FuzzParseRequest \
		broker:FuzzACL broker:FuzzConnect revocation:FuzzResponse internal/textcheck:FuzzCheck \
		web:FuzzNextPath api:FuzzDecodeEnroll; do
		pkg=${target%%:*}
		log "fuzz ${target#*:} ($t)"
		go test -run '^$' -fuzz "^${target#*:}\$" -fuzztime "$t" "./$pkg"
	done
}

case "${1:-all}" in
lint)
	lint
	;;
all)
	lint
	ensure_tools
	ensure_nats
	setup_postgres
	log "go test -race"
	go test -race -timeout "$TEST_TIMEOUT" ./...
	fuzz
	;;
fuzz)
	fuzz
	;;
bench)
	setup_postgres
	go test -run '^$' -bench "${2:-.}" -benchmem -count "${3:-1}" ./...
	;;
*)
	echo "usage: $0 [all|lint|fuzz|bench [regexp] [count]]" >&2
	exit 2
	;;
esac
