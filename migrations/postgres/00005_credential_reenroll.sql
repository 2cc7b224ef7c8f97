-- +goose Up
-- A credential may forbid enrolling a device id that exists already (a
-- one-time bootstrap for new devices only).
ALTER TABLE credentials ADD COLUMN no_reenroll boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE credentials DROP COLUMN no_reenroll;
