-- +goose Up
-- Pre-signed OCSP responses, one per certificate and CertID hash, so that a
-- restart, another replica or a responder-only process (`fleetpki ocsp`)
-- answers at once without signing. status mirrors the certificate's at
-- signing time, so a revocation's stale response is found and re-signed.
CREATE TABLE ocsp_responses (
    serial      TEXT NOT NULL,
    hash        TEXT NOT NULL,
    status      TEXT NOT NULL,
    der         BLOB NOT NULL,
    this_update INTEGER NOT NULL,
    next_update INTEGER NOT NULL,
    PRIMARY KEY (serial, hash)
) STRICT;

-- +goose Down
DROP TABLE ocsp_responses;
