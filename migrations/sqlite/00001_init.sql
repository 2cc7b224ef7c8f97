-- +goose Up
-- Times are INTEGER microseconds since the Unix epoch (UTC), so they sort and
-- compare as numbers; SQLite would compare text timestamps as strings.
CREATE TABLE devices (
    id         TEXT PRIMARY KEY,
    status     TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    metadata   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX devices_status_id ON devices (status, id);

CREATE TABLE certificates (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    serial             TEXT NOT NULL UNIQUE,
    device_id          TEXT NOT NULL REFERENCES devices (id) DEFERRABLE INITIALLY DEFERRED,
    profile            TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),
    not_before         INTEGER NOT NULL,
    not_after          INTEGER NOT NULL,
    der                BLOB NOT NULL,
    issuer_key_id      TEXT NOT NULL,
    fingerprint_sha256 TEXT NOT NULL UNIQUE,
    revoked_at         INTEGER,
    reason             INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
) STRICT;
CREATE INDEX certificates_device ON certificates (device_id, seq);
CREATE INDEX certificates_status ON certificates (status, seq);
CREATE INDEX certificates_revoked ON certificates (issuer_key_id, serial) WHERE status = 'revoked';

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    hash       BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked    INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE credentials (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    hash           BLOB NOT NULL UNIQUE,
    profiles       TEXT NOT NULL CHECK (json_valid(profiles)),
    device_pattern TEXT NOT NULL DEFAULT '',
    expires_at     INTEGER,
    max_uses       INTEGER NOT NULL DEFAULT 0 CHECK (max_uses >= 0),
    uses           INTEGER NOT NULL DEFAULT 0,
    disabled       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY,
    time          INTEGER NOT NULL,
    actor_name    TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    remote_addr   TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    details       TEXT NOT NULL CHECK (json_valid(details)),
    prev_hash     BLOB,
    hash          BLOB NOT NULL
) STRICT;
CREATE INDEX audit_events_target ON audit_events (target, seq);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB
) STRICT;
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, NULL);

CREATE TABLE crl_numbers (
    issuer_key_id TEXT PRIMARY KEY,
    number        INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE crl_numbers;
DROP TABLE audit_head;
DROP TABLE audit_events;
DROP TABLE credentials;
DROP TABLE api_tokens;
DROP TABLE users;
DROP TABLE certificates;
DROP TABLE devices;
