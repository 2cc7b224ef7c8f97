-- +goose Up
CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX web_sessions_user ON web_sessions (user_name);
-- The dashboard counts certificates issued per day.
CREATE INDEX certificates_created ON certificates (created_at);

-- +goose Down
DROP INDEX certificates_created;
DROP TABLE web_sessions;
