-- +goose Up
-- The last CRL of each issuer, so that a restart or another replica serves
-- it at once without signing.
CREATE TABLE crls (
    issuer_key_id text PRIMARY KEY,
    number        bigint NOT NULL,
    der           bytea NOT NULL,
    this_update   timestamptz NOT NULL,
    next_update   timestamptz NOT NULL
);

-- +goose Down
DROP TABLE crls;
