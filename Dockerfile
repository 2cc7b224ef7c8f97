# syntax=docker/dockerfile:1
#
# fleetpki in a container: a static binary on distroless, running as the
# non-root user 65532 with its data directory (CA keys, SQLite database,
# admin password) on the volume /var/lib/fleetpki.
#
#   docker build -t fleetpki .
#   docker run -p 8080:8080 -v fleetpki-data:/var/lib/fleetpki fleetpki
#
# The image must carry Go >= the go directive of go.mod (golang images set
# GOTOOLCHAIN=local, so an older 1.26.x refuses to build instead of downloading).

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so that a source change does not re-download modules.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Also make an empty data directory owned by the runtime user: Docker copies
# it, with its owner and mode, into a new named volume mounted over it.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.linkedVersion=${VERSION}" \
        -o /out/fleetpki ./cmd/fleetpki \
    && install -d -m 0700 -o 65532 -g 65532 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fleetpki /usr/local/bin/fleetpki
COPY --from=build --chown=65532:65532 /out/data /var/lib/fleetpki
# Inside a container the listeners must bind all interfaces to be reachable
# through published ports; --public-url must name the address clients use.
ENV FLEETPKI_DATA_DIR=/var/lib/fleetpki \
    FLEETPKI_HTTP_ADDR=0.0.0.0:8080 \
    FLEETPKI_HTTPS_ADDR=0.0.0.0:8443 \
    FLEETPKI_MQTT_ADDR=0.0.0.0:8883
USER 65532:65532
VOLUME ["/var/lib/fleetpki"]
# 8080: OCSP, CRL, CA certificates, health, metrics; 8443: API and admin UI; 8883: MQTT over TLS.
EXPOSE 8080 8443 8883
ENTRYPOINT ["/usr/local/bin/fleetpki"]
CMD ["serve"]
