# fleetpki — the targets the README documents. The logic lives in scripts/ so
# that CI (.ci/run) and `make test` run the very same thing.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     ?= bin/fleetpki
BENCH   ?= .
COUNT   ?= 1

.PHONY: all test lint build build-hsm bench bench-broker screenshots run clean

all: build

## test: gofmt, go vet, staticcheck, and go test -race ./... (starts Postgres if it is down)
test:
	scripts/test.sh

## lint: gofmt, go vet and staticcheck only
lint:
	scripts/test.sh lint

## build: a static binary in bin/
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.linkedVersion=$(VERSION)" -o $(BIN) ./cmd/fleetpki

## build-hsm: the same with cgo, so that CA keys can live in a PKCS#11 token (--kms pkcs11:…); needs gcc
build-hsm:
	CGO_ENABLED=1 go build -trimpath -ldflags "-s -w -X main.linkedVersion=$(VERSION)" -o $(BIN) ./cmd/fleetpki

## bench: every benchmark, Postgres ones included (narrow with BENCH=regexp, repeat with COUNT=n)
bench:
	scripts/test.sh bench '$(BENCH)' $(COUNT)

## bench-broker: MQTT connect rate and publish throughput vs Mosquitto, and 10k sessions' memory
bench-broker:
	go test ./broker -run '^$$' -bench 'Connect|Publish|Sessions' -benchtime 3s -count $(COUNT)

## screenshots: the admin UI's main pages at 1280x800 and 390x844, into screenshots/ (needs chromium)
screenshots:
	FLEETPKI_SCREENSHOTS=$(CURDIR)/screenshots go test ./cmd/fleetpki -run '^TestScreenshots$$' -count=1 -v

## run: serve with the defaults (data in ./fleetpki-data)
run:
	go run ./cmd/fleetpki serve

clean:
	rm -rf bin/ *.test *.out
