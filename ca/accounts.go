package ca

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"golang.org/x/crypto/argon2"
)

// AccountStore is what Accounts needs from persistence.
type AccountStore interface {
	CreateUser(ctx context.Context, u pki.User, ev pki.AuditEvent) error
	GetUser(ctx context.Context, name string) (pki.User, error)
	UpdateUser(ctx context.Context, name string, disabled bool, passwordHash string, ev pki.AuditEvent) error
	CreateAPIToken(ctx context.Context, t pki.APIToken, ev pki.AuditEvent) error
	GetAPIToken(ctx context.Context, hash []byte) (pki.APIToken, pki.User, error)
	CreateCredential(ctx context.Context, c pki.Credential, ev pki.AuditEvent) error
	GetCredentialByHash(ctx context.Context, hash []byte) (pki.Credential, error)
	ListCredentials(ctx context.Context) ([]pki.Credential, error)
	DisableCredential(ctx context.Context, id string, ev pki.AuditEvent) error
	UseCredential(ctx context.Context, id string, at time.Time) error
	ListAudit(ctx context.Context, afterSeq int64, limit int) ([]pki.AuditEvent, error)
}

// Accounts manages the people and machines that may talk to the CA: admin
// users with passwords and API tokens, and the enrollment credentials of
// factory lines. Secrets are generated here, shown to the caller once, and
// only their hashes are stored: SHA-256 for high-entropy random secrets
// (tokens, credentials), argon2id for passwords a person chose.
type Accounts struct {
	store AccountStore
	clock pki.Clock

	mu    sync.Mutex
	creds map[string]cachedCredential // by secret hash; see credentialTTL

	// hashSlots bounds the password hashes computed at once: each takes
	// argonMemory, so a burst of sign-ins must queue, not multiply memory.
	hashSlots chan struct{}

	// The last verified end of the audit chain, for VerifyAuditRecent.
	auditMu     sync.Mutex
	auditSeq    int64
	auditHash   []byte
	auditFullAt time.Time
}

// NewAccounts returns an Accounts over st.
func NewAccounts(st AccountStore, clock pki.Clock) *Accounts {
	if clock == nil {
		clock = pki.SystemClock{}
	}
	return &Accounts{store: st, clock: clock, hashSlots: make(chan struct{}, maxConcurrentHashes())}
}

// maxConcurrentHashes is one password hash per core, at least 2 and at
// most 8: argon2id is CPU-bound, so more at once only adds memory.
func maxConcurrentHashes() int { return min(max(runtime.GOMAXPROCS(0), 2), 8) }

// hashWait is how long a password check waits for a hash slot before it is
// answered "busy" (pki.Unavailable, which callers turn into 503 with
// Retry-After).
const hashWait = 2 * time.Second

// withHashSlot runs f while holding one of the password-hash slots.
func (a *Accounts) withHashSlot(ctx context.Context, f func()) error {
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
func (a *Accounts) CreateUser(ctx context.Context, name string, role pki.Role, password string, actor pki.Actor) (pki.User, error) {
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
func (a *Accounts) CheckPassword(ctx context.Context, name, password string) (pki.User, error) {
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
func (a *Accounts) rehash(ctx context.Context, u pki.User, password string) {
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
func (a *Accounts) CreateToken(ctx context.Context, userName string, ttl time.Duration, actor pki.Actor) (string, error) {
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
func (a *Accounts) AuthenticateToken(ctx context.Context, secret string) (pki.User, error) {
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
}

var credentialNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CreateCredential creates an enrollment credential and returns its secret, which is not kept.
func (a *Accounts) CreateCredential(ctx context.Context, spec CredentialSpec, actor pki.Actor) (string, pki.Credential, error) {
	if !credentialNameRE.MatchString(spec.Name) {
		return "", pki.Credential{}, pki.Errorf(pki.Invalid, "credential name must be 1 to 64 of letters, digits, '.', '_', '-'")
	}
	if spec.DevicePattern != "" {
		if _, err := CompileDevicePattern(spec.DevicePattern); err != nil {
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
		DevicePattern: spec.DevicePattern, MaxUses: spec.MaxUses, NoReenroll: spec.NoReenroll, CreatedAt: now}
	details := map[string]string{"credential_id": c.ID, "profiles": strings.Join(profiles, ","),
		"device_pattern": spec.DevicePattern, "max_uses": strconv.FormatInt(spec.MaxUses, 10),
		"no_reenroll": strconv.FormatBool(spec.NoReenroll)}
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
func (a *Accounts) AuthenticateCredential(ctx context.Context, secret string) (pki.Credential, error) {
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

func (a *Accounts) cachedCredential(hash []byte) (pki.Credential, bool) {
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
func (a *Accounts) cacheCredential(hash []byte, c pki.Credential) {
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
func (a *Accounts) forgetCredential(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h, e := range a.creds {
		if e.c.ID == id {
			delete(a.creds, h)
		}
	}
}

// useCredential spends one use; the store's conditional update makes the
// last use go to exactly one of concurrent callers.
func (a *Accounts) useCredential(ctx context.Context, id string) error {
	if err := a.store.UseCredential(ctx, id, a.clock.Now()); err != nil {
		return fmt.Errorf("use credential: %w", err)
	}
	return nil
}

// ListCredentials lists the enrollment credentials (without secrets, which are not kept).
func (a *Accounts) ListCredentials(ctx context.Context) ([]pki.Credential, error) {
	cs, err := a.store.ListCredentials(ctx)
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	return cs, nil
}

// DisableCredential disables an enrollment credential; disabling it again changes nothing.
func (a *Accounts) DisableCredential(ctx context.Context, id string, actor pki.Actor) error {
	ev := pki.AuditEvent{Time: a.clock.Now(), Actor: actor, Action: pki.ActionCredentialDisable, Target: id}
	if err := a.store.DisableCredential(ctx, id, ev); err != nil {
		return fmt.Errorf("disable credential %s: %w", id, err)
	}
	a.forgetCredential(id)
	return nil
}

// maxDevicePattern bounds a credential's device-id pattern.
const maxDevicePattern = 512

// CompileDevicePattern compiles a credential's device-id pattern, anchored so
// that it must match the whole id. The pattern must be a regular expression
// on its own before it is anchored: otherwise `sensor-[0-9]+)|(.*` would
// close the anchoring group early and, once wrapped, match every id.
func CompileDevicePattern(p string) (*regexp.Regexp, error) {
	if len(p) > maxDevicePattern {
		return nil, pki.Errorf(pki.Invalid, "device pattern is longer than %d bytes", maxDevicePattern)
	}
	if _, err := regexp.Compile(p); err != nil {
		return nil, pki.Wrap(pki.Invalid, err, fmt.Sprintf("device pattern %q is not a valid regular expression", truncate(p, 64)))
	}
	re, err := regexp.Compile(`^(?:` + p + `)$`)
	if err != nil {
		return nil, pki.Wrap(pki.Invalid, err, fmt.Sprintf("device pattern %q is not a valid regular expression", truncate(p, 64)))
	}
	return re, nil
}

// auditPage is how many events VerifyAudit reads per query.
const auditPage = 1000

// VerifyAudit walks the whole audit log and checks its hash chain. It
// returns the number of events checked; an error names the first bad event.
func (a *Accounts) VerifyAudit(ctx context.Context) (int64, error) {
	n, _, _, err := a.verifyAuditFrom(ctx, 0, nil)
	return n, err
}

// verifyAuditFrom verifies the events after seq after, chained to prev (the
// hash of event after), and returns how many it checked and the new end.
func (a *Accounts) verifyAuditFrom(ctx context.Context, after int64, prev []byte) (n, last int64, lastHash []byte, err error) {
	for {
		evs, err := a.store.ListAudit(ctx, after, auditPage)
		if err != nil {
			return n, after, prev, fmt.Errorf("verify audit: %w", err)
		}
		for _, e := range evs {
			if e.Seq != after+1 {
				return n, after, prev, fmt.Errorf("audit event %d follows %d: the log has a gap", e.Seq, after)
			}
			after = e.Seq
		}
		if prev, err = pki.VerifyChain(prev, evs); err != nil {
			return n, after, prev, err
		}
		n += int64(len(evs))
		if len(evs) < auditPage {
			return n, after, prev, nil
		}
	}
}

// auditFullEvery is how often VerifyAuditRecent re-reads the whole log.
const auditFullEvery = 10 * time.Minute

// AuditCheck is the result of VerifyAuditRecent.
type AuditCheck struct {
	Events int64     // events in the verified chain
	FullAt time.Time // when the whole chain was last read and verified
}

// VerifyAuditRecent verifies the audit chain for a page that shows it often:
// the whole chain at most every ten minutes, and in between only the events
// added since, chained to the last verified one. (`fleetpki audit verify`
// always reads everything.)
func (a *Accounts) VerifyAuditRecent(ctx context.Context) (AuditCheck, error) {
	a.auditMu.Lock()
	defer a.auditMu.Unlock()
	now := a.clock.Now()
	if a.auditFullAt.IsZero() || now.Sub(a.auditFullAt) >= auditFullEvery {
		n, last, hash, err := a.verifyAuditFrom(ctx, 0, nil)
		if err != nil {
			a.auditFullAt = time.Time{}
			return AuditCheck{Events: n}, err
		}
		a.auditSeq, a.auditHash, a.auditFullAt = last, hash, now
		return AuditCheck{Events: n, FullAt: now}, nil
	}
	_, last, hash, err := a.verifyAuditFrom(ctx, a.auditSeq, a.auditHash)
	if err != nil {
		a.auditFullAt = time.Time{} // the next check reads everything again
		return AuditCheck{Events: last, FullAt: a.auditFullAt}, err
	}
	a.auditSeq, a.auditHash = last, hash
	return AuditCheck{Events: last, FullAt: a.auditFullAt}, nil
}

// RandomPassword returns a random password of 24 URL-safe characters (144 bits).
func RandomPassword() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func secretHash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// argon2id parameters: OWASP's first recommendation (19 MiB, 2 passes, one
// lane), about 25 ms and 19 MiB per hash on this project's 2-core reference
// machine. RFC 9106's 64 MiB option cost 75 ms and 64 MiB each, so a burst of
// twenty sign-ins took 1.3 GB; with these and maxConcurrentHashes the
// worst case is a few tens of MiB. Hashes made with other parameters still
// verify (the parameters are in the hash) and are replaced at sign-in.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
	// maxPasswordLen bounds what is hashed at all.
	maxPasswordLen = 1024
)

// argonParams is the parameter field of hashes made now.
var argonParams = fmt.Sprintf("m=%d,t=%d,p=%d", argonMemory, argonTime, argonThreads)

// dummyHash is verified against when a user does not exist, to keep timing even.
var dummyHash = "$argon2id$v=19$" + argonParams + "$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// currentHashParams reports whether a PHC hash uses the current parameters.
func currentHashParams(hash string) bool {
	parts := strings.Split(hash, "$")
	return len(parts) == 6 && parts[1] == "argon2id" && parts[3] == argonParams
}

// HashPassword returns the argon2id hash of password in PHC string format.
func HashPassword(password string) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// VerifyPassword reports whether password matches a PHC argon2id hash; a
// malformed hash never matches.
func VerifyPassword(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false
	}
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<20 || t > 16 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// SetUserDisabled disables (or enables again) a user; a disabled user can
// neither sign in nor use a session or API token made before.
func (a *Accounts) SetUserDisabled(ctx context.Context, name string, disabled bool, actor pki.Actor) error {
	ev := pki.AuditEvent{Time: a.clock.Now(), Actor: actor, Action: pki.ActionUserUpdate, Target: name,
		Details: map[string]string{"disabled": strconv.FormatBool(disabled)}}
	if err := a.store.UpdateUser(ctx, name, disabled, "", ev); err != nil {
		return fmt.Errorf("update user %q: %w", name, err)
	}
	return nil
}

// ChangePassword sets a new password for a user who proves the current one.
func (a *Accounts) ChangePassword(ctx context.Context, name, current, next string, actor pki.Actor) error {
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
