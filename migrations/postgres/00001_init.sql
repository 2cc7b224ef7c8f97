-- +goose Up
CREATE TABLE devices (
    id         text PRIMARY KEY,
    status     text NOT NULL CHECK (status IN ('active', 'revoked')),
    metadata   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX devices_status_id ON devices (status, id);
CREATE INDEX devices_metadata ON devices USING gin (metadata jsonb_path_ops);

CREATE TABLE certificates (
    seq                bigserial PRIMARY KEY,
    serial             text NOT NULL UNIQUE,
    -- deferred so that a batch can insert the certificate first and detect a
    -- serial collision (ON CONFLICT DO NOTHING) before touching the device
    device_id          text NOT NULL REFERENCES devices (id) DEFERRABLE INITIALLY DEFERRED,
    profile            text NOT NULL,
    status             text NOT NULL CHECK (status IN ('valid', 'revoked')),
    not_before         timestamptz NOT NULL,
    not_after          timestamptz NOT NULL,
    der                bytea NOT NULL,
    issuer_key_id      text NOT NULL,
    fingerprint_sha256 text NOT NULL UNIQUE,
    revoked_at         timestamptz,
    reason             smallint NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE INDEX certificates_device ON certificates (device_id, seq);
CREATE INDEX certificates_status ON certificates (status, seq);
CREATE INDEX certificates_revoked ON certificates (issuer_key_id, serial) WHERE status = 'revoked';

CREATE TABLE users (
    id            text PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    role          text NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL
);

CREATE TABLE api_tokens (
    id         text PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (id),
    hash       bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked    boolean NOT NULL DEFAULT false
);

CREATE TABLE credentials (
    id             text PRIMARY KEY,
    name           text NOT NULL UNIQUE,
    hash           bytea NOT NULL UNIQUE,
    profiles       jsonb NOT NULL,
    device_pattern text NOT NULL DEFAULT '',
    expires_at     timestamptz,
    max_uses       bigint NOT NULL DEFAULT 0 CHECK (max_uses >= 0),
    uses           bigint NOT NULL DEFAULT 0,
    disabled       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL
);

CREATE TABLE audit_events (
    seq           bigint PRIMARY KEY,
    time          timestamptz NOT NULL,
    actor_name    text NOT NULL,
    credential_id text NOT NULL,
    remote_addr   text NOT NULL,
    request_id    text NOT NULL,
    action        text NOT NULL,
    target        text NOT NULL,
    details       jsonb NOT NULL,
    prev_hash     bytea,
    hash          bytea NOT NULL
);
CREATE INDEX audit_events_target ON audit_events (target, seq);

-- The chain's head: locking this one row serializes audit appends across
-- every process sharing the database, so the chain never forks.
CREATE TABLE audit_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    hash bytea
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, NULL);

CREATE TABLE crl_numbers (
    issuer_key_id text PRIMARY KEY,
    number        bigint NOT NULL
);

-- +goose Down
DROP TABLE crl_numbers;
DROP TABLE audit_head;
DROP TABLE audit_events;
DROP TABLE credentials;
DROP TABLE api_tokens;
DROP TABLE users;
DROP TABLE certificates;
DROP TABLE devices;
