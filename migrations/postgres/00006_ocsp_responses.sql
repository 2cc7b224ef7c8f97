-- +goose Up
-- Pre-signed OCSP responses, one per certificate and CertID hash, so that a
-- restart, another replica or a responder-only process (`fleetpki ocsp`)
-- answers at once without signing. status mirrors the certificate's at
-- signing time, so a revocation's stale response is found and re-signed.
CREATE TABLE ocsp_responses (
    serial      text NOT NULL,
    hash        text NOT NULL,
    status      text NOT NULL,
    der         bytea NOT NULL,
    this_update timestamptz NOT NULL,
    next_update timestamptz NOT NULL,
    PRIMARY KEY (serial, hash)
);

-- +goose Down
DROP TABLE ocsp_responses;
