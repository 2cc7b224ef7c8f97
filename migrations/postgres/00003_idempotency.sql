-- +goose Up
-- Idempotency keys of enrollment requests, per credential: a retried request
-- with the same key and body gets the certificate issued the first time.
CREATE TABLE idempotency_keys (
    credential_id text NOT NULL,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    serial        text,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (credential_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
