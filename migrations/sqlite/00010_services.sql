-- +goose Up
-- Services (brokers, servers) get certificates from the same CA; they are
-- kept apart from devices. A credential states the names it may request.
ALTER TABLE devices ADD COLUMN kind TEXT NOT NULL DEFAULT 'device' CHECK (kind IN ('device', 'service'));
CREATE INDEX devices_kind_id ON devices (kind, id);
ALTER TABLE credentials ADD COLUMN name_pattern TEXT NOT NULL DEFAULT '';

-- +goose Down
DROP INDEX devices_kind_id;
ALTER TABLE credentials DROP COLUMN name_pattern;
ALTER TABLE devices DROP COLUMN kind;
