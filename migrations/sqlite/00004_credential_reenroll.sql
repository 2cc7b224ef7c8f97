-- +goose Up
ALTER TABLE credentials ADD COLUMN no_reenroll INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE credentials DROP COLUMN no_reenroll;
