package accounts

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// UserStore is what Users needs from persistence.
type UserStore interface {
	CreateUser(ctx context.Context, u pki.User, ev pki.AuditEvent) error
	GetUser(ctx context.Context, name string) (pki.User, error)
	ListUsers(ctx context.Context) ([]pki.User, error)
	UpdateUser(ctx context.Context, name string, disabled bool, passwordHash string, ev pki.AuditEvent) error
	CreateAPIToken(ctx context.Context, t pki.APIToken, ev pki.AuditEvent) error
	GetAPIToken(ctx context.Context, hash []byte) (pki.APIToken, pki.User, error)
}

// Users manages the people (and broker identities) who administer fleetpki:
// users with passwords (argon2id) and API tokens (stored as SHA-256). It is
// safe for concurrent use.
type Users struct {
	store UserStore
	clock pki.Clock
	// hashSlots bounds the password hashes computed at once: each takes
	// argonMemory, so a burst of sign-ins must queue, not multiply memory.
	hashSlots chan struct{}
}

// NewUsers returns Users over st; clock nil means the system clock.
func NewUsers(st UserStore, clock pki.Clock) *Users {
	if clock == nil {
		clock = pki.SystemClock{}
	}
	return &Users{store: st, clock: clock, hashSlots: make(chan struct{}, maxConcurrentHashes())}
}

// List lists the users by name.
func (a *Users) List(ctx context.Context) ([]pki.User, error) {
	us, err := a.store.ListUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	return us, nil
}

// maxConcurrentHashes is one password hash per core, at least 2 and at
// most 8: argon2id is CPU-bound, so more at once only adds memory.
func maxConcurrentHashes() int { return min(max(runtime.GOMAXPROCS(0), 2), 8) }

// hashWait is how long a password check waits for a hash slot before it is
// answered "busy" (pki.Unavailable, which callers turn into 503 with
// Retry-After).
const hashWait = 2 * time.Second

// withHashSlot runs f while holding one of the password-hash slots.
func (a *Users) withHashSlot(ctx context.Context, f func()) error {
	t := time.NewTimer(hashWait)
	defer t.Stop()
	select {
	case a.hashSlots <- struct{}{}:
	case <-t.C:
		return pki.Errorf(pki.Unavailable, "too many password checks at once; retry in a moment")
	case <-ctx.Done():
		return fmt.Errorf("password check: %w", ctx.Err())
	}
	defer func() { <-a.hashSlots }()
	f()
	return nil
}

// Secret prefixes make a leaked secret recognisable (e.g. by secret scanners)
// and tell the two kinds apart at a glance.
const (
	tokenPrefix      = "fpt_"
	credentialPrefix = "fpe_"
	minPasswordLen   = 12
)

// CreateUser creates an administrator. A password shorter than 12 characters is refused.
func (a *Users) CreateUser(ctx context.Context, name string, role pki.Role, password string, actor pki.Actor) (pki.User, error) {
	if err := pki.ValidateUserName(name); err != nil {
		return pki.User{}, err
	}
	if _, err := pki.ParseRole(string(role)); err != nil {
		return pki.User{}, err
	}
	if len(password) < minPasswordLen || len(password) > maxPasswordLen {
		return pki.User{}, pki.Errorf(pki.Invalid, "password must have %d to %d characters", minPasswordLen, maxPasswordLen)
	}
	now := a.clock.Now()
	var h string
	if err := a.withHashSlot(ctx, func() { h = HashPassword(password) }); err != nil {
		return pki.User{}, err
	}
	u := pki.User{ID: randomID(), Name: name, Role: role, PasswordHash: h, CreatedAt: now}
	ev := pki.AuditEvent{Time: now, Actor: actor, Action: pki.ActionUserCreate, Target: name,
		Details: map[string]string{"role": string(role)}}
	if err := a.store.CreateUser(ctx, u, ev); err != nil {
		return pki.User{}, fmt.Errorf("create user %q: %w", name, err)
	}
	return u, nil
}

// CheckPassword returns the user when name and password match an enabled
// user, and pki.Unauthenticated otherwise; the error does not tell which part
// was wrong.
//
// At most a few hashes run at once (see maxConcurrentHashes); past that a
// check waits briefly and is then refused with pki.Unavailable. A hash made
// with older parameters is replaced by one with the current parameters
// after a successful check.
func (a *Users) CheckPassword(ctx context.Context, name, password string) (pki.User, error) {
	if len(password) > maxPasswordLen {
		return pki.User{}, pki.Errorf(pki.Unauthenticated, "wrong user name or password")
	}
	u, err := a.store.GetUser(ctx, name)
	if errors.Is(err, pki.NotFound) {
		// Spend the same time as a real check so timing does not reveal user names.
		if err := a.withHashSlot(ctx, func() { VerifyPassword(dummyHash, password) }); err != nil {
			return pki.User{}, err
		}
		return pki.User{}, pki.Errorf(pki.Unauthenticated, "wrong user name or password")
	}
	if err != nil {
		return pki.User{}, fmt.Errorf("check password: %w", err)
	}
	ok := false
	if err := a.withHashSlot(ctx, func() { ok = VerifyPassword(u.PasswordHash, password) }); err != nil {
		return pki.User{}, err
	}
	if !ok || u.Disabled {
		return pki.User{}, pki.Errorf(pki.Unauthenticated, "wrong user name or password")
	}
	if !currentHashParams(u.PasswordHash) {
		a.rehash(ctx, u, password)
	}
	return u, nil
}

// rehash stores the password under the current argon2id parameters; a
// failure only leaves the old (still valid) hash in place.
func (a *Users) rehash(ctx context.Context, u pki.User, password string) {
	var h string
	if a.withHashSlot(ctx, func() { h = HashPassword(password) }) != nil {
		return
	}
	ev := pki.AuditEvent{Time: a.clock.Now(), Actor: pki.Actor{Name: "fleetpki"}, Action: pki.ActionUserUpdate, Target: u.Name,
		Details: map[string]string{"password": "rehashed with current parameters"}}
	_ = a.store.UpdateUser(ctx, u.Name, u.Disabled, h, ev)
}

// CreateToken makes a new admin API token for the user and returns its secret,
// which is not kept. ttl 0 means the token does not expire.
func (a *Users) CreateToken(ctx context.Context, userName string, ttl time.Duration, actor pki.Actor) (string, error) {
	if ttl < 0 {
		return "", pki.Errorf(pki.Invalid, "token lifetime must not be negative")
	}
	u, err := a.store.GetUser(ctx, userName)
	if err != nil {
		return "", fmt.Errorf("create token for %q: %w", userName, err)
	}
	if u.Disabled {
		return "", pki.Errorf(pki.Forbidden, "user %q is disabled", userName)
	}
	secret := tokenPrefix + randomSecret()
	now := a.clock.Now()
	t := pki.APIToken{ID: randomID(), UserID: u.ID, Hash: secretHash(secret), CreatedAt: now}
	details := map[string]string{"token_id": t.ID}
	if ttl > 0 {
		exp := now.Add(ttl)
		t.ExpiresAt = &exp
		details["expires_at"] = exp.UTC().Format(time.RFC3339)
	}
	ev := pki.AuditEvent{Time: now, Actor: actor, Action: pki.ActionTokenCreate, Target: userName, Details: details}
	if err := a.store.CreateAPIToken(ctx, t, ev); err != nil {
		return "", fmt.Errorf("create token for %q: %w", userName, err)
	}
	return secret, nil
}

// AuthenticateToken returns the user of a valid API token secret, or
// pki.Unauthenticated for an unknown, expired or revoked token or a disabled user.
func (a *Users) AuthenticateToken(ctx context.Context, secret string) (pki.User, error) {
	if !strings.HasPrefix(secret, tokenPrefix) {
		return pki.User{}, pki.Errorf(pki.Unauthenticated, "invalid API token")
	}
	t, u, err := a.store.GetAPIToken(ctx, secretHash(secret))
	if errors.Is(err, pki.NotFound) {
		return pki.User{}, pki.Errorf(pki.Unauthenticated, "invalid API token")
	}
	if err != nil {
		return pki.User{}, fmt.Errorf("authenticate token: %w", err)
	}
	if t.Revoked || u.Disabled || (t.ExpiresAt != nil && !a.clock.Now().Before(*t.ExpiresAt)) {
		return pki.User{}, pki.Errorf(pki.Unauthenticated, "invalid API token")
	}
	return u, nil
}

// SetUserDisabled disables (or enables again) a user; a disabled user can
// neither sign in nor use a session or API token made before.
func (a *Users) SetUserDisabled(ctx context.Context, name string, disabled bool, actor pki.Actor) error {
	ev := pki.AuditEvent{Time: a.clock.Now(), Actor: actor, Action: pki.ActionUserUpdate, Target: name,
		Details: map[string]string{"disabled": strconv.FormatBool(disabled)}}
	if err := a.store.UpdateUser(ctx, name, disabled, "", ev); err != nil {
		return fmt.Errorf("update user %q: %w", name, err)
	}
	return nil
}

// ChangePassword sets a new password for a user who proves the current one.
func (a *Users) ChangePassword(ctx context.Context, name, current, next string, actor pki.Actor) error {
	u, err := a.CheckPassword(ctx, name, current)
	if err != nil {
		return err
	}
	if len(next) < minPasswordLen || len(next) > maxPasswordLen {
		return pki.Errorf(pki.Invalid, "the new password must have %d to %d characters", minPasswordLen, maxPasswordLen)
	}
	ev := pki.AuditEvent{Time: a.clock.Now(), Actor: actor, Action: pki.ActionUserUpdate, Target: name,
		Details: map[string]string{"password": "changed"}}
	var h string
	if err := a.withHashSlot(ctx, func() { h = HashPassword(next) }); err != nil {
		return err
	}
	if err := a.store.UpdateUser(ctx, name, u.Disabled, h, ev); err != nil {
		return fmt.Errorf("change password of %q: %w", name, err)
	}
	return nil
}
