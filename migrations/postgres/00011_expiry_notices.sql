-- +goose Up
-- Announcements of expiring certificates to a webhook: one per
-- certificate, retried with backoff, kept as dead letters when they fail.
CREATE TABLE expiry_notices (
    serial       text PRIMARY KEY,
    device_id    text NOT NULL,
    not_after    timestamptz NOT NULL,
    state        text NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts     integer NOT NULL DEFAULT 0,
    next_attempt timestamptz NOT NULL,
    last_error   text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL
);
CREATE INDEX expiry_notices_due ON expiry_notices (next_attempt) WHERE state = 'pending';

-- +goose Down
DROP TABLE expiry_notices;
