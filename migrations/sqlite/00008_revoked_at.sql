-- +goose Up
-- Processes sharing the file poll for recent revocations every second.
CREATE INDEX certificates_revoked_at ON certificates (revoked_at) WHERE status = 'revoked';

-- +goose Down
DROP INDEX certificates_revoked_at;
