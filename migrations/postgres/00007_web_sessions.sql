-- +goose Up
-- Admin web UI sessions. Only a SHA-256 hash of the session id is kept, so a
-- database read does not hand out live sessions.
CREATE TABLE web_sessions (
    id_hash    text PRIMARY KEY,
    user_name  text NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    csrf       text NOT NULL,
    created_at timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_name);
-- The dashboard counts certificates issued per day.
CREATE INDEX certificates_created ON certificates (created_at);

-- +goose Down
DROP INDEX certificates_created;
DROP TABLE web_sessions;
