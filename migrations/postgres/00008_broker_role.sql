-- +goose Up
-- Standalone brokers authenticate as users of the role broker (a machine
-- identity that may only follow the revocation event stream).
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('admin', 'operator', 'auditor', 'broker'));

-- +goose Down
DELETE FROM users WHERE role = 'broker';
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('admin', 'operator', 'auditor'));
