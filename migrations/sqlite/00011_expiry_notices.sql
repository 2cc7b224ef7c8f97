-- +goose Up
-- Announcements of expiring certificates to a webhook: one per
-- certificate, retried with backoff, kept as dead letters when they fail.
CREATE TABLE expiry_notices (
    serial       TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL,
    not_after    INTEGER NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    last_error   TEXT NOT NULL DEFAULT '',
    updated_at   INTEGER NOT NULL
);
CREATE INDEX expiry_notices_due ON expiry_notices (next_attempt) WHERE state = 'pending';

-- +goose Down
DROP TABLE expiry_notices;
