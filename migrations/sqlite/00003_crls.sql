-- +goose Up
CREATE TABLE crls (
    issuer_key_id TEXT PRIMARY KEY,
    number        INTEGER NOT NULL,
    der           BLOB NOT NULL,
    this_update   INTEGER NOT NULL,
    next_update   INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE crls;
