-- +goose Up
CREATE TABLE idempotency_keys (
    credential_id TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  BLOB NOT NULL,
    serial        TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (credential_id, key)
) STRICT;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
