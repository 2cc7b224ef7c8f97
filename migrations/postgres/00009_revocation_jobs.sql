-- +goose Up
-- Bulk revocations run in batches; the job is recorded first so that one
-- interrupted by a crash resumes at the next start.
CREATE TABLE revocation_jobs (
    id          text PRIMARY KEY,
    meta_key    text NOT NULL,
    meta_value  text NOT NULL,
    set_hash    text NOT NULL,
    reason      integer NOT NULL,
    actor       jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked     bigint NOT NULL DEFAULT 0,
    finished_at timestamptz
);
CREATE INDEX revocation_jobs_open ON revocation_jobs (created_at) WHERE finished_at IS NULL;

-- +goose Down
DROP TABLE revocation_jobs;
