-- +goose NO TRANSACTION
-- +goose Up
-- Standalone brokers authenticate as users of the role broker. SQLite
-- cannot change a CHECK constraint: the table is rebuilt (SQLite's
-- documented procedure: foreign keys off, copy, drop, rename, check), on
-- the store's single write connection, in one transaction.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE users_new (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor', 'broker')),
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
) STRICT;
INSERT INTO users_new (id, name, role, password_hash, disabled, created_at)
    SELECT id, name, role, password_hash, disabled, created_at FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
COMMIT;
PRAGMA foreign_keys = ON;

-- +goose Down
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
DELETE FROM users WHERE role = 'broker';
CREATE TABLE users_old (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
) STRICT;
INSERT INTO users_old SELECT id, name, role, password_hash, disabled, created_at FROM users;
DROP TABLE users;
ALTER TABLE users_old RENAME TO users;
COMMIT;
PRAGMA foreign_keys = ON;
