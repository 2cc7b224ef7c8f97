package accounts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// SessionStore keeps the sessions.
type SessionStore interface {
	CreateWebSession(ctx context.Context, s pki.WebSession) error
	GetWebSession(ctx context.Context, idHash string) (pki.WebSession, error)
	TouchWebSession(ctx context.Context, idHash string, at time.Time) error
	DeleteWebSession(ctx context.Context, idHash string) error
	DeleteUserWebSessions(ctx context.Context, userName, keep string) error
}

// UserLookup reads a user (a session's user may be disabled meanwhile).
type UserLookup interface {
	GetUser(ctx context.Context, name string) (pki.User, error)
}

// Auditor appends an audit event that records no other change (sign-in,
// sign-out).
type Auditor interface {
	AppendAudit(ctx context.Context, ev pki.AuditEvent) error
}

// SessionsConfig wires Sessions to persistence.
type SessionsConfig struct {
	Store SessionStore
	Users UserLookup
	Audit Auditor
	Clock pki.Clock // nil: the system clock
}

// Session lifetimes of the admin web UI.
const (
	// SessionIdle ends a session nobody used for this long.
	SessionIdle = 30 * time.Minute
	// SessionMax ends every session this long after sign-in.
	SessionMax = 12 * time.Hour
	// touchEvery limits last-seen writes to one a minute per session.
	touchEvery = time.Minute
)

// Sessions keeps the admin web UI's sessions in the store, so they survive
// restarts, are shared by replicas, and can be revoked by deleting them. The
// session id lives only in the browser's cookie; the store holds its hash.
type Sessions struct {
	store SessionStore
	users UserLookup
	audit Auditor
	clock pki.Clock
}

// NewSessions returns Sessions as cfg wires them.
func NewSessions(cfg SessionsConfig) *Sessions {
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	return &Sessions{store: cfg.Store, users: cfg.Users, audit: cfg.Audit, clock: cfg.Clock}
}

func sessionHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// Create signs u in: it returns a new session id (for the cookie) and the
// session's CSRF token, and audits the sign-in.
func (s *Sessions) Create(ctx context.Context, u pki.User, actor pki.Actor) (id, csrf string, err error) {
	id, csrf = randomSecret(), randomSecret()
	now := s.clock.Now()
	ws := pki.WebSession{IDHash: sessionHash(id), UserName: u.Name, CSRF: csrf, CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(SessionMax)}
	if err := s.store.CreateWebSession(ctx, ws); err != nil {
		return "", "", fmt.Errorf("create session: %w", err)
	}
	actor.Name = u.Name
	if err := s.audit.AppendAudit(ctx, pki.AuditEvent{Time: now, Actor: actor, Action: pki.ActionWebLogin, Target: u.Name}); err != nil {
		return "", "", fmt.Errorf("audit sign-in: %w", err)
	}
	return id, csrf, nil
}

// Lookup returns the signed-in user and the session of a cookie's id, or
// pki.Unauthenticated when the session is unknown, idle too long, past its
// lifetime, or its user is disabled.
func (s *Sessions) Lookup(ctx context.Context, id string) (pki.User, pki.WebSession, error) {
	unauth := pki.Errorf(pki.Unauthenticated, "not signed in, or the session has ended")
	if id == "" {
		return pki.User{}, pki.WebSession{}, unauth
	}
	h := sessionHash(id)
	ws, err := s.store.GetWebSession(ctx, h)
	if errors.Is(err, pki.NotFound) {
		return pki.User{}, pki.WebSession{}, unauth
	}
	if err != nil {
		return pki.User{}, pki.WebSession{}, fmt.Errorf("session: %w", err)
	}
	now := s.clock.Now()
	if !now.Before(ws.ExpiresAt) || now.Sub(ws.LastSeen) > SessionIdle {
		_ = s.store.DeleteWebSession(ctx, h)
		return pki.User{}, pki.WebSession{}, unauth
	}
	u, err := s.users.GetUser(ctx, ws.UserName)
	if err != nil || u.Disabled {
		return pki.User{}, pki.WebSession{}, unauth
	}
	if now.Sub(ws.LastSeen) >= touchEvery {
		if err := s.store.TouchWebSession(ctx, h, now); err != nil {
			return pki.User{}, pki.WebSession{}, fmt.Errorf("session: %w", err)
		}
	}
	return u, ws, nil
}

// Delete ends the session of a cookie's id (sign-out) and audits it.
func (s *Sessions) Delete(ctx context.Context, id string, actor pki.Actor) error {
	if err := s.store.DeleteWebSession(ctx, sessionHash(id)); err != nil {
		return fmt.Errorf("sign out: %w", err)
	}
	return s.audit.AppendAudit(ctx, pki.AuditEvent{Time: s.clock.Now(), Actor: actor, Action: pki.ActionWebLogout, Target: actor.Name})
}

// EndOthers ends every session of the user but the one of the cookie id
// keep (after a password change, the other sign-ins must not live on).
func (s *Sessions) EndOthers(ctx context.Context, userName, keep string) error {
	if err := s.store.DeleteUserWebSessions(ctx, userName, sessionHash(keep)); err != nil {
		return fmt.Errorf("end other sessions: %w", err)
	}
	return nil
}
