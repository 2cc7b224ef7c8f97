-- +goose Up
-- Bulk revocations run in batches; the job is recorded first so that one
-- interrupted by a crash resumes at the next start.
CREATE TABLE revocation_jobs (
    id          TEXT PRIMARY KEY,
    meta_key    TEXT NOT NULL,
    meta_value  TEXT NOT NULL,
    set_hash    TEXT NOT NULL,
    reason      INTEGER NOT NULL,
    actor       TEXT NOT NULL CHECK (json_valid(actor)),
    created_at  INTEGER NOT NULL,
    revoked     INTEGER NOT NULL DEFAULT 0,
    finished_at INTEGER
) STRICT;
CREATE INDEX revocation_jobs_open ON revocation_jobs (created_at) WHERE finished_at IS NULL;

-- +goose Down
DROP TABLE revocation_jobs;
