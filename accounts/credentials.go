package accounts

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// DefaultProfile is the profile a credential may use when it names none
// (the CA's built-in device profile).
const DefaultProfile = "device"

// CredentialStore is what Credentials needs from persistence.
type CredentialStore interface {
	CreateCredential(ctx context.Context, c pki.Credential, ev pki.AuditEvent) error
	GetCredentialByHash(ctx context.Context, hash []byte) (pki.Credential, error)
	ListCredentials(ctx context.Context) ([]pki.Credential, error)
	DisableCredential(ctx context.Context, id string, ev pki.AuditEvent) error
	UseCredential(ctx context.Context, id string, at time.Time) error
}

// Credentials manages the enrollment credentials of factory lines: secrets
// are generated here, shown once, and stored as their SHA-256. It is safe
// for concurrent use.
type Credentials struct {
	store CredentialStore
	clock pki.Clock

	mu    sync.Mutex
	creds map[string]cachedCredential // by secret hash; see credentialTTL
}

// NewCredentials returns Credentials over st; clock nil means the system clock.
func NewCredentials(st CredentialStore, clock pki.Clock) *Credentials {
	if clock == nil {
		clock = pki.SystemClock{}
	}
	return &Credentials{store: st, clock: clock}
}

// CredentialSpec describes a new enrollment credential.
type CredentialSpec struct {
	Name string
	// Profiles the credential may enroll with; empty means only "device".
	Profiles []string
	// DevicePattern is an RE2 expression the whole device id must match; empty allows any valid id.
	DevicePattern string
	// TTL is the credential's lifetime; 0 means it does not expire.
	TTL time.Duration
	// MaxUses bounds the number of enrollments; 0 means unlimited.
	MaxUses int64
	// NoReenroll refuses device ids that are enrolled already.
	NoReenroll bool
	// NamePattern is an RE2 expression every DNS name or IP address of a
	// service certificate must match; empty allows none (no server or
	// broker certificates with this credential).
	NamePattern string
}

var credentialNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CreateCredential creates an enrollment credential and returns its secret, which is not kept.
func (a *Credentials) CreateCredential(ctx context.Context, spec CredentialSpec, actor pki.Actor) (string, pki.Credential, error) {
	if !credentialNameRE.MatchString(spec.Name) {
		return "", pki.Credential{}, pki.Errorf(pki.Invalid, "credential name must be 1 to 64 of letters, digits, '.', '_', '-'")
	}
	for _, p := range []string{spec.DevicePattern, spec.NamePattern} {
		if p == "" {
			continue
		}
		if _, err := pki.CompileDevicePattern(p); err != nil {
			return "", pki.Credential{}, err
		}
	}
	if spec.TTL < 0 || spec.MaxUses < 0 {
		return "", pki.Credential{}, pki.Errorf(pki.Invalid, "expiry and max uses must not be negative")
	}
	profiles := spec.Profiles
	if len(profiles) == 0 {
		profiles = []string{DefaultProfile}
	}
	secret := credentialPrefix + randomSecret()
	now := a.clock.Now()
	c := pki.Credential{ID: randomID(), Name: spec.Name, Hash: secretHash(secret), Profiles: profiles,
		DevicePattern: spec.DevicePattern, NamePattern: spec.NamePattern, MaxUses: spec.MaxUses, NoReenroll: spec.NoReenroll, CreatedAt: now}
	details := map[string]string{"credential_id": c.ID, "profiles": strings.Join(profiles, ","),
		"device_pattern": spec.DevicePattern, "max_uses": strconv.FormatInt(spec.MaxUses, 10),
		"no_reenroll": strconv.FormatBool(spec.NoReenroll), "name_pattern": spec.NamePattern}
	if spec.TTL > 0 {
		exp := now.Add(spec.TTL)
		c.ExpiresAt = &exp
		details["expires_at"] = exp.UTC().Format(time.RFC3339)
	}
	ev := pki.AuditEvent{Time: now, Actor: actor, Action: pki.ActionCredentialCreate, Target: spec.Name, Details: details}
	if err := a.store.CreateCredential(ctx, c, ev); err != nil {
		return "", pki.Credential{}, fmt.Errorf("create credential %q: %w", spec.Name, err)
	}
	return secret, c, nil
}

// AuthenticateCredential returns the enrollment credential whose secret this
// is. An unknown secret is pki.Unauthenticated; a disabled, expired or used-up
// credential is pki.Forbidden (its holder is known, but may not enroll).
func (a *Credentials) AuthenticateCredential(ctx context.Context, secret string) (pki.Credential, error) {
	if !strings.HasPrefix(secret, credentialPrefix) {
		return pki.Credential{}, pki.Errorf(pki.Unauthenticated, "invalid enrollment credential")
	}
	hash := secretHash(secret)
	c, ok := a.cachedCredential(hash)
	var err error
	if !ok {
		c, err = a.store.GetCredentialByHash(ctx, hash)
		if err == nil {
			a.cacheCredential(hash, c)
		}
	}
	if errors.Is(err, pki.NotFound) {
		return pki.Credential{}, pki.Errorf(pki.Unauthenticated, "invalid enrollment credential")
	}
	if err != nil {
		return pki.Credential{}, fmt.Errorf("authenticate credential: %w", err)
	}
	switch {
	case c.Disabled:
		return pki.Credential{}, pki.Errorf(pki.Forbidden, "the enrollment credential %q is disabled", c.Name)
	case c.ExpiresAt != nil && !a.clock.Now().Before(*c.ExpiresAt):
		return pki.Credential{}, pki.Errorf(pki.Forbidden, "the enrollment credential %q has expired", c.Name)
	case c.MaxUses > 0 && c.Uses >= c.MaxUses:
		return pki.Credential{}, pki.Errorf(pki.Forbidden, "the enrollment credential %q is used up", c.Name)
	}
	return c, nil
}

// credentialTTL is how long an unlimited credential is trusted from memory:
// a factory line enrolls hundreds a second with one credential, and each
// database read costs. Disabling it here takes effect at once; on another
// replica, within this time.
const credentialTTL = time.Second

type cachedCredential struct {
	c     pki.Credential
	until time.Time
}

func (a *Credentials) cachedCredential(hash []byte) (pki.Credential, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.creds[string(hash)]
	if !ok || !a.clock.Now().Before(e.until) {
		return pki.Credential{}, false
	}
	return e.c, true
}

// cacheCredential keeps unlimited, enabled credentials only: a limited one's
// use count must be read fresh each time.
func (a *Credentials) cacheCredential(hash []byte, c pki.Credential) {
	if c.MaxUses > 0 || c.Disabled {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.creds == nil || len(a.creds) > 10000 {
		a.creds = map[string]cachedCredential{}
	}
	a.creds[string(hash)] = cachedCredential{c: c, until: a.clock.Now().Add(credentialTTL)}
}

// forgetCredential drops a credential from the cache (it was disabled).
func (a *Credentials) forgetCredential(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h, e := range a.creds {
		if e.c.ID == id {
			delete(a.creds, h)
		}
	}
}

// UseCredential spends one use; the store's conditional update makes the
// last use go to exactly one of concurrent callers.
func (a *Credentials) UseCredential(ctx context.Context, id string) error {
	if err := a.store.UseCredential(ctx, id, a.clock.Now()); err != nil {
		return fmt.Errorf("use credential: %w", err)
	}
	return nil
}

// ListCredentials lists the enrollment credentials (without secrets, which are not kept).
func (a *Credentials) ListCredentials(ctx context.Context) ([]pki.Credential, error) {
	cs, err := a.store.ListCredentials(ctx)
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	return cs, nil
}

// DisableCredential disables an enrollment credential; disabling it again changes nothing.
func (a *Credentials) DisableCredential(ctx context.Context, id string, actor pki.Actor) error {
	ev := pki.AuditEvent{Time: a.clock.Now(), Actor: actor, Action: pki.ActionCredentialDisable, Target: id}
	if err := a.store.DisableCredential(ctx, id, ev); err != nil {
		return fmt.Errorf("disable credential %s: %w", id, err)
	}
	a.forgetCredential(id)
	return nil
}
