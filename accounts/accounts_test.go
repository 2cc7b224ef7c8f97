package accounts

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/fleetpki/fleetpki/pki"
)

// memAccounts is a logic-only fake of AccountStore; the real backends are
// covered by store/storetest.
type memAccounts struct {
	UserStore
	CredentialStore
	mu     sync.Mutex
	users  map[string]pki.User
	tokens map[string]pki.APIToken
	creds  map[string]pki.Credential
	audit  []pki.AuditEvent
}

func newMemAccounts() *memAccounts {
	return &memAccounts{users: map[string]pki.User{}, tokens: map[string]pki.APIToken{}, creds: map[string]pki.Credential{}}
}

func (m *memAccounts) appendAudit(ev pki.AuditEvent) {
	var prev []byte
	if n := len(m.audit); n > 0 {
		prev = m.audit[n-1].Hash
	}
	ev.Seq, ev.PrevHash = int64(len(m.audit)+1), prev
	ev.Hash = ev.ChainHash(prev)
	m.audit = append(m.audit, ev)
}

func (m *memAccounts) CreateUser(_ context.Context, u pki.User, ev pki.AuditEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.users[u.Name]; ok {
		return pki.Errorf(pki.Conflict, "user exists")
	}
	m.users[u.Name] = u
	m.appendAudit(ev)
	return nil
}

func (m *memAccounts) GetUser(_ context.Context, name string) (pki.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[name]
	if !ok {
		return pki.User{}, pki.Errorf(pki.NotFound, "no user")
	}
	return u, nil
}

func (m *memAccounts) UpdateUser(_ context.Context, name string, disabled bool, hash string, ev pki.AuditEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[name]
	if !ok {
		return pki.Errorf(pki.NotFound, "no user")
	}
	u.Disabled = disabled
	if hash != "" {
		u.PasswordHash = hash
	}
	m.users[name] = u
	m.appendAudit(ev)
	return nil
}

func (m *memAccounts) CreateAPIToken(_ context.Context, t pki.APIToken, ev pki.AuditEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tokens[string(t.Hash)] = t
	m.appendAudit(ev)
	return nil
}

func (m *memAccounts) GetAPIToken(_ context.Context, hash []byte) (pki.APIToken, pki.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[string(hash)]
	if !ok {
		return pki.APIToken{}, pki.User{}, pki.Errorf(pki.NotFound, "no token")
	}
	for _, u := range m.users {
		if u.ID == t.UserID {
			return t, u, nil
		}
	}
	return pki.APIToken{}, pki.User{}, pki.Errorf(pki.NotFound, "no user")
}

func (m *memAccounts) CreateCredential(_ context.Context, c pki.Credential, ev pki.AuditEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.creds[string(c.Hash)] = c
	m.appendAudit(ev)
	return nil
}

func (m *memAccounts) ListAudit(_ context.Context, after int64, limit int) ([]pki.AuditEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if after >= int64(len(m.audit)) {
		return nil, nil
	}
	end := min(int(after)+limit, len(m.audit))
	return append([]pki.AuditEvent(nil), m.audit[after:end]...), nil
}

type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { return c.t }

func TestPasswordHash(t *testing.T) {
	h := HashPassword("correct horse battery")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q is not PHC argon2id with the chosen parameters", h)
	}
	if h == HashPassword("correct horse battery") {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	for name, tc := range map[string]struct {
		hash, pw string
		want     bool
	}{
		"match":          {h, "correct horse battery", true},
		"wrong password": {h, "correct horse batterY", false},
		"empty hash":     {"", "x", false},
		"truncated":      {h[:len(h)-5], "correct horse battery", false},
		"other scheme":   {strings.Replace(h, "argon2id", "argon2i", 1), "correct horse battery", false},
		"huge memory":    {strings.Replace(h, "m=19456", "m=99999999", 1), "correct horse battery", false},
	} {
		if got := VerifyPassword(tc.hash, tc.pw); got != tc.want {
			t.Errorf("%s: VerifyPassword = %v, want %v", name, got, tc.want)
		}
	}
}

func TestAccounts(t *testing.T) {
	ctx := context.Background()
	clock := &fixedClock{time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	st := newMemAccounts()
	a, cr := NewUsers(st, clock), NewCredentials(st, clock)
	actor := pki.Actor{Name: "cli"}

	if _, err := a.CreateUser(ctx, "alice", pki.RoleOperator, "short", actor); !errors.Is(err, pki.Invalid) {
		t.Fatalf("short password: err = %v, want Invalid", err)
	}
	if _, err := a.CreateUser(ctx, "Bad Name", pki.RoleOperator, "long enough password", actor); !errors.Is(err, pki.Invalid) {
		t.Fatalf("bad name: err = %v, want Invalid", err)
	}
	if _, err := a.CreateUser(ctx, "alice", "root", "long enough password", actor); !errors.Is(err, pki.Invalid) {
		t.Fatalf("bad role: err = %v, want Invalid", err)
	}
	if _, err := a.CreateUser(ctx, "alice", pki.RoleOperator, "long enough password", actor); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CheckPassword(ctx, "alice", "long enough password"); err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	for _, tc := range [][2]string{{"alice", "wrong password!!"}, {"bob", "long enough password"}} {
		if _, err := a.CheckPassword(ctx, tc[0], tc[1]); !errors.Is(err, pki.Unauthenticated) {
			t.Errorf("CheckPassword(%q) err = %v, want Unauthenticated", tc[0], err)
		}
	}

	secret, err := a.CreateToken(ctx, "alice", time.Hour, actor)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range st.tokens {
		if bytes.Contains(tok.Hash, []byte(secret)) || len(tok.Hash) != 32 {
			t.Fatal("token stored otherwise than as its SHA-256")
		}
	}
	if u, err := a.AuthenticateToken(ctx, secret); err != nil || u.Name != "alice" || u.Role != pki.RoleOperator {
		t.Fatalf("AuthenticateToken = %+v, %v", u, err)
	}
	for name, s := range map[string]string{"unknown": tokenPrefix + "nope", "no prefix": secret[len(tokenPrefix):], "empty": ""} {
		if _, err := a.AuthenticateToken(ctx, s); !errors.Is(err, pki.Unauthenticated) {
			t.Errorf("%s token: err = %v, want Unauthenticated", name, err)
		}
	}
	clock.t = clock.t.Add(time.Hour)
	if _, err := a.AuthenticateToken(ctx, secret); !errors.Is(err, pki.Unauthenticated) {
		t.Errorf("expired token: err = %v, want Unauthenticated", err)
	}
	if _, err := a.CreateToken(ctx, "nobody", 0, actor); !errors.Is(err, pki.NotFound) {
		t.Errorf("token for unknown user: err = %v, want NotFound", err)
	}

	csecret, cred, err := cr.CreateCredential(ctx, CredentialSpec{Name: "line-1", DevicePattern: `dev-[0-9]+`, MaxUses: 10}, actor)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(csecret, credentialPrefix) || len(cred.Profiles) != 1 || cred.Profiles[0] != DefaultProfile {
		t.Fatalf("credential = %+v, secret %q", cred, csecret)
	}
	if _, _, err := cr.CreateCredential(ctx, CredentialSpec{Name: "line-2", DevicePattern: `dev-[`}, actor); !errors.Is(err, pki.Invalid) {
		t.Fatalf("bad pattern: err = %v, want Invalid", err)
	}
	re, _ := pki.CompileDevicePattern(`dev-[0-9]+`)
	if re.MatchString("xdev-1") || re.MatchString("dev-1x") || !re.MatchString("dev-42") {
		t.Fatal("device pattern is not anchored")
	}
	// A pattern that closes the anchoring group itself would, once
	// wrapped, match any id: it must be refused before it is anchored.
	for _, p := range []string{`sensor-[0-9]+)|(.*`, `a)|(?:.*`, `x))|((.*`, `\Q`, strings.Repeat("a", 600)} {
		if _, _, err := cr.CreateCredential(ctx, CredentialSpec{Name: "escape", DevicePattern: p}, actor); !errors.Is(err, pki.Invalid) {
			t.Errorf("pattern %q: err = %v, want Invalid", p, err)
		}
		if re, err := pki.CompileDevicePattern(p); err == nil && re.MatchString("anything-at-all") {
			t.Errorf("pattern %q compiled and matches any id", p)
		}
	}

}

// A hash made with older, costlier parameters still verifies and is
// replaced by one with the current parameters at the next sign-in.
func TestPasswordRehash(t *testing.T) {
	ctx := context.Background()
	st := newMemAccounts()
	a := NewUsers(st, nil)
	if _, err := a.CreateUser(ctx, "old", pki.RoleAuditor, "long enough password", pki.Actor{}); err != nil {
		t.Fatal(err)
	}
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("long enough password"), salt, 3, 64*1024, 2, 32)
	u := st.users["old"]
	u.PasswordHash = fmt.Sprintf("$argon2id$v=19$m=65536,t=3,p=2$%s$%s", base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
	st.users["old"] = u
	if _, err := a.CheckPassword(ctx, "old", "long enough password"); err != nil {
		t.Fatalf("an old-parameter hash no longer verifies: %v", err)
	}
	if h := st.users["old"].PasswordHash; !currentHashParams(h) {
		t.Fatalf("hash after sign-in = %q, want the current parameters", h)
	}
	if _, err := a.CheckPassword(ctx, "old", "long enough password"); err != nil {
		t.Fatalf("the rehashed password does not verify: %v", err)
	}
}

// At most maxConcurrentHashes password hashes run at once; past the wait a
// check is refused as Unavailable rather than queued without bound.
func TestPasswordHashSlots(t *testing.T) {
	a := NewUsers(newMemAccounts(), nil)
	n := cap(a.hashSlots)
	for range n {
		a.hashSlots <- struct{}{} // every slot busy
	}
	start := time.Now()
	_, err := a.CheckPassword(context.Background(), "anyone", "some password")
	if !errors.Is(err, pki.Unavailable) {
		t.Fatalf("with every hash slot taken: err = %v, want Unavailable", err)
	}
	if waited := time.Since(start); waited < hashWait || waited > hashWait+time.Second {
		t.Errorf("waited %v for a slot, want about %v", waited, hashWait)
	}
}
