package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// conflictOr turns a unique violation into pki.Conflict with msg.
func (s *Store) conflictOr(err error, msg string) error {
	if err != nil && s.d.IsUniqueViolation(err) {
		return pki.Wrap(pki.Conflict, err, msg)
	}
	return err
}

const userColumns = `id, name, role, password_hash, disabled, created_at`

func scanUser(r rowScanner) (pki.User, error) {
	var u pki.User
	var role string
	err := r.Scan(&u.ID, &u.Name, &role, &u.PasswordHash, boolCol{&u.Disabled}, timeCol{&u.CreatedAt})
	u.Role = pki.Role(role)
	return u, err
}

// CreateUser stores a user.
func (s *Store) CreateUser(ctx context.Context, u pki.User, ev pki.AuditEvent) error {
	return s.audited(ctx, "create user", ev, func(tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (id, name, role, password_hash, disabled, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, u.ID, u.Name, string(u.Role), u.PasswordHash, u.Disabled, s.t(u.CreatedAt))
		return false, s.conflictOr(err, fmt.Sprintf("a user named %q exists", u.Name))
	})
}

// GetUser returns the user by name.
func (s *Store) GetUser(ctx context.Context, name string) (pki.User, error) {
	u, err := scanUser(s.rdb.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return pki.User{}, pki.Errorf(pki.NotFound, "no user %q", name)
	}
	return u, s.wrap(err, "get user")
}

// ListUsers lists all users by name.
func (s *Store) ListUsers(ctx context.Context) ([]pki.User, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY name`)
	if err != nil {
		return nil, s.wrap(err, "list users")
	}
	defer rows.Close()
	var out []pki.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, s.wrap(err, "list users: scan")
		}
		out = append(out, u)
	}
	return out, s.wrap(rows.Err(), "list users")
}

// CreateAPIToken stores a token.
func (s *Store) CreateAPIToken(ctx context.Context, t pki.APIToken, ev pki.AuditEvent) error {
	return s.audited(ctx, "create token", ev, func(tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO api_tokens (id, user_id, hash, created_at, expires_at, revoked)
			VALUES ($1, $2, $3, $4, $5, $6)`, t.ID, t.UserID, t.Hash, s.t(t.CreatedAt), s.tp(t.ExpiresAt), t.Revoked)
		return false, s.conflictOr(err, "the token exists")
	})
}

// GetAPIToken returns the token with this hash and its user.
func (s *Store) GetAPIToken(ctx context.Context, hash []byte) (pki.APIToken, pki.User, error) {
	var t pki.APIToken
	var u pki.User
	var role string
	err := s.rdb.QueryRowContext(ctx, `SELECT t.id, t.user_id, t.hash, t.created_at, t.expires_at, t.revoked,
		u.id, u.name, u.role, u.password_hash, u.disabled, u.created_at
		FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = $1`, hash).Scan(
		&t.ID, &t.UserID, &t.Hash, timeCol{&t.CreatedAt}, nullTimeCol{&t.ExpiresAt}, boolCol{&t.Revoked},
		&u.ID, &u.Name, &role, &u.PasswordHash, boolCol{&u.Disabled}, timeCol{&u.CreatedAt})
	if errors.Is(err, sql.ErrNoRows) {
		return pki.APIToken{}, pki.User{}, pki.Errorf(pki.NotFound, "no such token")
	}
	u.Role = pki.Role(role)
	return t, u, s.wrap(err, "get token")
}

const credentialColumns = `id, name, hash, profiles, device_pattern, expires_at, max_uses, uses, disabled, created_at, no_reenroll, name_pattern`

func scanCredential(r rowScanner) (pki.Credential, error) {
	var c pki.Credential
	err := r.Scan(&c.ID, &c.Name, &c.Hash, jsonCol{&c.Profiles}, &c.DevicePattern, nullTimeCol{&c.ExpiresAt},
		&c.MaxUses, &c.Uses, boolCol{&c.Disabled}, timeCol{&c.CreatedAt}, boolCol{&c.NoReenroll}, &c.NamePattern)
	return c, err
}

// CreateCredential stores an enrollment credential.
func (s *Store) CreateCredential(ctx context.Context, c pki.Credential, ev pki.AuditEvent) error {
	profiles, err := jsonArg(c.Profiles)
	if err != nil {
		return fmt.Errorf("encode profiles: %w", err)
	}
	if c.Profiles == nil {
		profiles = "[]"
	}
	return s.audited(ctx, "create credential", ev, func(tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO credentials
			(id, name, hash, profiles, device_pattern, expires_at, max_uses, uses, disabled, created_at, no_reenroll, name_pattern)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			c.ID, c.Name, c.Hash, profiles, c.DevicePattern, s.tp(c.ExpiresAt), c.MaxUses, c.Uses, c.Disabled, s.t(c.CreatedAt), c.NoReenroll,
			c.NamePattern)
		return false, s.conflictOr(err, fmt.Sprintf("a credential named %q exists", c.Name))
	})
}

// GetCredentialByHash returns the credential whose secret hashes to hash.
func (s *Store) GetCredentialByHash(ctx context.Context, hash []byte) (pki.Credential, error) {
	c, err := scanCredential(s.rdb.QueryRowContext(ctx, `SELECT `+credentialColumns+` FROM credentials WHERE hash = $1`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return pki.Credential{}, pki.Errorf(pki.NotFound, "no such credential")
	}
	return c, s.wrap(err, "get credential")
}

// ListCredentials lists credentials by name.
func (s *Store) ListCredentials(ctx context.Context) ([]pki.Credential, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+credentialColumns+` FROM credentials ORDER BY name`)
	if err != nil {
		return nil, s.wrap(err, "list credentials")
	}
	defer rows.Close()
	var out []pki.Credential
	for rows.Next() {
		c, err := scanCredential(rows)
		if err != nil {
			return nil, s.wrap(err, "list credentials: scan")
		}
		out = append(out, c)
	}
	return out, s.wrap(rows.Err(), "list credentials")
}

// DisableCredential disables a credential; disabling it again changes nothing.
func (s *Store) DisableCredential(ctx context.Context, id string, ev pki.AuditEvent) error {
	return s.audited(ctx, "disable credential", ev, func(tx *sql.Tx) (bool, error) {
		res, err := tx.ExecContext(ctx, `UPDATE credentials SET disabled = $2 WHERE id = $1 AND NOT disabled`, id, true)
		if err != nil {
			return false, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return false, err
		}
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM credentials WHERE id = $1`, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return false, pki.Errorf(pki.NotFound, "no credential %q", id)
		}
		return true, err
	})
}

// UseCredential counts one use if the credential may still be used.
func (s *Store) UseCredential(ctx context.Context, id string, at time.Time) error {
	return s.inTx(ctx, "use credential", func(tx *sql.Tx) error {
		// One conditional update: concurrent uses of a last remaining use
		// cannot both succeed.
		res, err := tx.ExecContext(ctx, `UPDATE credentials SET uses = uses + 1
			WHERE id = $1 AND NOT disabled AND (max_uses = 0 OR uses < max_uses)
			AND (expires_at IS NULL OR expires_at > $2)`, id, s.t(at))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM credentials WHERE id = $1`, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return pki.Errorf(pki.NotFound, "no credential %q", id)
		}
		if err != nil {
			return err
		}
		return pki.Errorf(pki.Forbidden, "the credential is disabled, expired or used up")
	})
}

// NextCRLNumber returns the issuer's next CRL number.
func (s *Store) NextCRLNumber(ctx context.Context, issuerKeyID string) (int64, error) {
	var n int64
	err := s.inTx(ctx, "next CRL number", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO crl_numbers (issuer_key_id, number) VALUES ($1, 1)
			ON CONFLICT (issuer_key_id) DO UPDATE SET number = crl_numbers.number + 1 RETURNING number`,
			issuerKeyID).Scan(&n)
	})
	return n, err
}

// UpdateUser sets a user's disabled flag and, when passwordHash is not
// empty, the password hash, with the audit event; a missing user is
// pki.NotFound. A disabled user's web sessions and API tokens stop working
// at their next use (both check the flag).
func (s *Store) UpdateUser(ctx context.Context, name string, disabled bool, passwordHash string, ev pki.AuditEvent) error {
	return s.audited(ctx, "update user", ev, func(tx *sql.Tx) (bool, error) {
		res, err := tx.ExecContext(ctx, `UPDATE users SET disabled = $2,
			password_hash = CASE WHEN $3 = '' THEN password_hash ELSE $3 END WHERE name = $1`, name, disabled, passwordHash)
		if err != nil {
			return false, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = pki.Errorf(pki.NotFound, "no user %q", name)
			}
			return false, err
		}
		return false, nil
	})
}
