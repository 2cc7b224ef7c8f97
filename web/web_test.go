package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/fleetpki/fleetpki/accounts"
	"github.com/fleetpki/fleetpki/audit"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/internal/testenv"
	"github.com/fleetpki/fleetpki/pki"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// env is the UI over a real store and CA, with one user per role.
type env struct {
	h     http.Handler
	clock *clock
	ca    *ca.CA
	te    *testenv.Env
	cfg   Config // what h was built from
}

const testPassword = "correct horse battery staple"

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	clk := &clock{t: time.Now()}
	te := testenv.New(t, testenv.Options{Clock: clk})
	st, c := te.Store, te.CA
	users := accounts.NewUsers(st, clk)
	for _, r := range []pki.Role{pki.RoleAuditor, pki.RoleOperator, pki.RoleAdmin} {
		if _, err := users.CreateUser(ctx, string(r), r, testPassword, pki.Actor{Name: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Users: users, Credentials: accounts.NewCredentials(st, clk), Directory: ca.NewDirectory(st, clk), Audit: audit.New(st, clk),
		Revoker: c, Sessions: accounts.NewSessions(accounts.SessionsConfig{Store: st, Users: st, Audit: st, Clock: clk}), Clock: clk}
	handler, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{h: handler, clock: clk, ca: c, te: te, cfg: cfg}
}

// client is a browser-like session: cookies, and the CSRF token of the last page.
type client struct {
	t      *testing.T
	e      *env
	cookie map[string]string
	csrf   string
	remote string // RemoteAddr of its requests (default httptest's 192.0.2.1:1234)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
var tokenRE = regexp.MustCompile(`name="token" value="([^"]+)"`)

func (c *client) do(method, path string, form url.Values, hdr ...string) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, "https://fleetpki.test"+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	for k, v := range c.cookie {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	if c.remote != "" {
		req.RemoteAddr = c.remote
	}
	rec := httptest.NewRecorder()
	c.e.h.ServeHTTP(rec, req)
	resp := rec.Result()
	for _, ck := range resp.Cookies() {
		if ck.MaxAge < 0 {
			delete(c.cookie, ck.Name)
		} else {
			c.cookie[ck.Name] = ck.Value
		}
	}
	b, _ := io.ReadAll(resp.Body)
	if m := csrfRE.FindStringSubmatch(string(b)); m != nil {
		c.csrf = m[1]
	}
	return resp, string(b)
}

func (e *env) login(t *testing.T, user, password string) (*client, *http.Response) {
	t.Helper()
	return e.loginFrom(t, "", user, password)
}

// loginFrom signs in from the address remote ("" for httptest's default).
func (e *env) loginFrom(t *testing.T, remote, user, password string) (*client, *http.Response) {
	t.Helper()
	c := &client{t: t, e: e, cookie: map[string]string{}, remote: remote}
	_, page := c.do(http.MethodGet, "/login", nil)
	m := tokenRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("login page has no token:\n%s", page)
	}
	resp, _ := c.do(http.MethodPost, "/login", url.Values{"username": {user}, "password": {password}, "token": {m[1]}, "next": {"/"}})
	if resp.StatusCode == http.StatusSeeOther {
		c.do(http.MethodGet, "/", nil) // picks up the session's CSRF token
	}
	return c, resp
}

// TestEveryRouteIsAuthorized walks chi's routes: each must be in the route
// table, refuse a visitor without a session, and refuse a role below its own.
func TestEveryRouteIsAuthorized(t *testing.T) {
	e := newEnv(t)
	known := map[string]pki.Role{}
	for _, rt := range routes {
		known[rt.method+" "+rt.pattern] = rt.role
	}
	public := map[string]bool{}
	for _, rt := range publicRoutes {
		public[rt.method+" "+rt.pattern] = true
	}
	public["GET /static/*"] = true
	sessions := map[pki.Role]*client{}
	for _, r := range []pki.Role{pki.RoleAuditor, pki.RoleOperator, pki.RoleAdmin} {
		c, resp := e.login(t, string(r), testPassword)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login as %s: %d", r, resp.StatusCode)
		}
		sessions[r] = c
	}
	anon := &client{t: t, e: e, cookie: map[string]string{}}
	walked := 0
	err := chi.Walk(e.h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		key := method + " " + route
		if public[key] {
			return nil
		}
		need, ok := known[key]
		if !ok {
			t.Errorf("route %s is not in the route table: it has no declared role", key)
			return nil
		}
		walked++
		path := strings.NewReplacer("{id}", "dev-1", "{serial}", "abc").Replace(route)
		var form url.Values
		if method == http.MethodPost {
			form = url.Values{}
		}
		resp, _ := anon.do(method, path, form)
		switch {
		case method == http.MethodGet && (resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login")):
			t.Errorf("%s without a session: %d %s, want a redirect to /login", key, resp.StatusCode, resp.Header.Get("Location"))
		case method == http.MethodPost && resp.StatusCode != http.StatusUnauthorized:
			t.Errorf("%s without a session: %d, want 401", key, resp.StatusCode)
		}
		for _, r := range []pki.Role{pki.RoleAuditor, pki.RoleOperator} {
			if r.Allows(need) {
				continue
			}
			c := sessions[r]
			if form != nil {
				form = url.Values{"csrf": {c.csrf}}
			}
			if resp, _ := c.do(method, path, form); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s as %s (needs %s): %d, want 403", key, r, need, resp.StatusCode)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if walked != len(routes) {
		t.Errorf("walked %d routes, the table has %d", walked, len(routes))
	}
}

func TestCSRFAndCrossOrigin(t *testing.T) {
	e := newEnv(t)
	c, _ := e.login(t, "operator", testPassword)
	if c.csrf == "" {
		t.Fatal("no CSRF token on the dashboard")
	}
	// A state change without the token, or with a wrong one, is refused.
	for _, tok := range []string{"", "forged"} {
		resp, body := c.do(http.MethodPost, "/logout", url.Values{"csrf": {tok}})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "not sent from fleetpki") {
			t.Errorf("POST with CSRF %q: %d", tok, resp.StatusCode)
		}
	}
	// A cross-origin POST is refused before the token is even looked at.
	resp, _ := c.do(http.MethodPost, "/logout", url.Values{"csrf": {c.csrf}}, "Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", resp.StatusCode)
	}
	resp, _ = c.do(http.MethodPost, "/logout", url.Values{"csrf": {c.csrf}}, "Origin", "https://evil.example")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST from another Origin: %d, want 403", resp.StatusCode)
	}
	// The session survived all of that; a proper logout ends it for good.
	if resp, _ := c.do(http.MethodGet, "/", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("session lost: %d", resp.StatusCode)
	}
	old := c.cookie[sessionCookie]
	if resp, _ := c.do(http.MethodPost, "/logout", url.Values{"csrf": {c.csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	c.cookie[sessionCookie] = old // a stolen copy of the cookie
	if resp, _ := c.do(http.MethodGet, "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the logged-out session still works: %d", resp.StatusCode)
	}
	// The login form itself needs its cookie token (no login CSRF).
	fresh := &client{t: t, e: e, cookie: map[string]string{}}
	if resp, _ := fresh.do(http.MethodPost, "/login", url.Values{"username": {"admin"}, "password": {testPassword}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("login without the form token: %d, want 403", resp.StatusCode)
	}
}

func TestLoginThrottle(t *testing.T) {
	e := newEnv(t)
	for i := range maxPairFailures {
		if _, resp := e.login(t, "admin", "wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, resp.StatusCode)
		}
	}
	_, resp := e.login(t, "admin", testPassword)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("right password after %d failures: %d, want 429 with Retry-After", maxPairFailures, resp.StatusCode)
	}
	// Other users are not locked out by it, and neither is the admin from
	// another address: nobody can lock the admin out from everywhere.
	if _, resp := e.login(t, "operator", testPassword); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("another user: %d", resp.StatusCode)
	}
	if _, resp := e.loginFrom(t, "198.51.100.7:4000", "admin", testPassword); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the admin from another address: %d, want a sign-in", resp.StatusCode)
	}
	e.clock.add(pairLockout + time.Second)
	if _, resp := e.login(t, "admin", testPassword); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the lockout: %d", resp.StatusCode)
	}
	// One address guessing many names is held at maxIPFailures.
	const sprayer = "203.0.113.9:5000"
	for i := range maxIPFailures {
		if _, resp := e.loginFrom(t, sprayer, fmt.Sprintf("nobody-%d", i), "wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("spray %d: %d", i, resp.StatusCode)
		}
	}
	if _, resp := e.loginFrom(t, sprayer, "auditor", testPassword); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the sprayer's address after %d failures: %d, want 429", maxIPFailures, resp.StatusCode)
	}
}

// countingAccounts counts the password checks that reach the accounts.
type countingAccounts struct {
	Users
	checks atomic.Int64
}

func (c *countingAccounts) CheckPassword(ctx context.Context, name, password string) (pki.User, error) {
	c.checks.Add(1)
	return c.Users.CheckPassword(ctx, name, password)
}

// Twenty wrong passwords at once for one user: an attempt is counted before
// its password is hashed, so at most the limit are checked.
func TestConcurrentWrongPasswords(t *testing.T) {
	e := newEnv(t)
	counter := &countingAccounts{Users: e.cfg.Users}
	cfg := e.cfg
	cfg.Users = counter
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	var wg sync.WaitGroup
	codes := make(chan int, 20)
	for range 20 {
		wg.Go(func() {
			_, resp := e.login(t, "admin", "wrong")
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	n429 := 0
	for c := range codes {
		if c == http.StatusTooManyRequests {
			n429++
		}
	}
	if got := counter.checks.Load(); got > maxPairFailures {
		t.Errorf("%d password checks ran, want at most %d", got, maxPairFailures)
	}
	if n429 < 20-maxPairFailures {
		t.Errorf("%d attempts were refused with 429, want at least %d", n429, 20-maxPairFailures)
	}
}

func TestSessionIdleTimeout(t *testing.T) {
	e := newEnv(t)
	c, _ := e.login(t, "auditor", testPassword)
	e.clock.add(accounts.SessionIdle - time.Minute)
	if resp, _ := c.do(http.MethodGet, "/devices", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("active session: %d", resp.StatusCode)
	}
	e.clock.add(accounts.SessionIdle + time.Minute)
	if resp, _ := c.do(http.MethodGet, "/devices", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("idle session: %d, want a redirect to sign in", resp.StatusCode)
	}
}

func TestSecurityHeadersAndCookies(t *testing.T) {
	e := newEnv(t)
	c := &client{t: t, e: e, cookie: map[string]string{}}
	for _, p := range []string{"/login", "/", "/nope", "/static/style.css"} {
		resp, _ := c.do(http.MethodGet, p, nil)
		h := resp.Header
		if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || strings.Contains(h.Get("Content-Security-Policy"), "unsafe-inline") ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") == "" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: security headers %v", p, h)
		}
	}
	req := httptest.NewRequest(http.MethodGet, "https://fleetpki.test/login", nil)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	for _, ck := range rec.Result().Cookies() {
		if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || !strings.HasPrefix(ck.Name, "__Host-") {
			t.Errorf("cookie %+v", ck)
		}
	}
}

// Bad input gets a clear 4xx page and changes nothing.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	c, _ := e.login(t, "admin", testPassword)
	cases := []struct {
		method, path string
		form         url.Values
		want         int
	}{
		{http.MethodGet, "/devices?meta=nonsense", nil, http.StatusBadRequest},
		{http.MethodGet, "/devices?status=weird", nil, http.StatusBadRequest},
		{http.MethodGet, "/certificates/zz-not-hex", nil, http.StatusBadRequest},
		{http.MethodGet, "/certificates/abcdef", nil, http.StatusNotFound},
		{http.MethodGet, "/devices/none-such", nil, http.StatusNotFound},
		{http.MethodPost, "/devices/none-such/revoke", url.Values{"reason": {"keyCompromise"}, "confirm": {"none-such"}}, http.StatusNotFound},
		{http.MethodPost, "/devices/x/revoke", url.Values{"reason": {"bogus"}, "confirm": {"x"}}, http.StatusBadRequest},
		{http.MethodPost, "/bulk-revoke", url.Values{"meta": {"lot"}, "reason": {"keyCompromise"}}, http.StatusBadRequest},
		{http.MethodPost, "/credentials", url.Values{"name": {"bad name!"}}, http.StatusBadRequest},
		{http.MethodPost, "/credentials", url.Values{"name": {"escape"}, "pattern": {`sensor-[0-9]+)|(.*`}}, http.StatusBadRequest},
		{http.MethodGet, "/devices?q=a%00b", nil, http.StatusBadRequest},
		{http.MethodPost, "/users", url.Values{"name": {"x"}, "role": {"root"}}, http.StatusBadRequest},
	}
	for _, tc := range cases {
		if tc.form != nil {
			tc.form.Set("csrf", c.csrf)
		}
		resp, body := c.do(tc.method, tc.path, tc.form)
		if resp.StatusCode != tc.want || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "<h1>") {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
}

// /static/ serves files, never a listing of them.
func TestStaticNoListing(t *testing.T) {
	e := newEnv(t)
	c := &client{t: t, e: e, cookie: map[string]string{}}
	if resp, _ := c.do(http.MethodGet, "/static/style.css", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("/static/style.css: %d", resp.StatusCode)
	}
	for _, p := range []string{"/static/", "/static", "/static/.", "/static/nope.css"} {
		resp, body := c.do(http.MethodGet, p, nil)
		if resp.StatusCode == http.StatusOK || strings.Contains(body, `href="style.css"`) {
			t.Errorf("GET %s: %d %q, want no listing", p, resp.StatusCode, body)
		}
	}
	if resp, _ := c.do(http.MethodHead, "/login", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD /login: %d, want 200 like GET", resp.StatusCode)
	}
}

// An admin disabling a user ends that user's session at its next request;
// a user changes their own password and signs in with the new one only.
func TestDisableUserAndChangePassword(t *testing.T) {
	e := newEnv(t)
	admin, _ := e.login(t, "admin", testPassword)
	op, _ := e.login(t, "operator", testPassword)
	if resp, _ := admin.do(http.MethodPost, "/users/admin/disable", url.Values{"csrf": {admin.csrf}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("disabling oneself: %d, want 400", resp.StatusCode)
	}
	if resp, _ := admin.do(http.MethodPost, "/users/operator/disable", url.Values{"csrf": {admin.csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("disable: %d", resp.StatusCode)
	}
	if resp, _ := op.do(http.MethodGet, "/devices", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a disabled user's session still works: %d", resp.StatusCode)
	}
	if _, resp := e.login(t, "operator", testPassword); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a disabled user signed in: %d", resp.StatusCode)
	}
	if resp, _ := admin.do(http.MethodPost, "/users/operator/enable", url.Values{"csrf": {admin.csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("enable: %d", resp.StatusCode)
	}

	aud, _ := e.login(t, "auditor", testPassword)
	audElsewhere, _ := e.loginFrom(t, "198.51.100.20:999", "auditor", testPassword)
	const next = "a much longer new passphrase"
	if resp, body := aud.do(http.MethodPost, "/account/password", url.Values{"csrf": {aud.csrf}, "current": {"wrong"}, "new": {next}, "confirm": {next}}); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "current password is wrong") {
		t.Fatalf("wrong current password: %d", resp.StatusCode)
	}
	if resp, _ := aud.do(http.MethodPost, "/account/password", url.Values{"csrf": {aud.csrf}, "current": {testPassword}, "new": {"short"}, "confirm": {"short"}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("short password: %d", resp.StatusCode)
	}
	if resp, body := aud.do(http.MethodPost, "/account/password", url.Values{"csrf": {aud.csrf}, "current": {testPassword}, "new": {next}, "confirm": {next}}); resp.StatusCode != http.StatusOK || !strings.Contains(body, "password is changed") {
		t.Fatalf("change: %d", resp.StatusCode)
	}
	if resp, _ := aud.do(http.MethodGet, "/devices", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the session that changed the password ended: %d", resp.StatusCode)
	}
	if resp, _ := audElsewhere.do(http.MethodGet, "/devices", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("another session of the user survived the password change: %d, want a redirect to sign in", resp.StatusCode)
	}
	if _, resp := e.login(t, "auditor", testPassword); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the old password still signs in: %d", resp.StatusCode)
	}
	if _, resp := e.login(t, "auditor", next); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the new password does not sign in: %d", resp.StatusCode)
	}
}

// FuzzNextPath: whatever a sign-in form carries as "next", the redirect
// stays on this site.
func FuzzNextPath(f *testing.F) {
	for _, s := range []string{"/", "/devices?q=a", "//evil.example", "/\t/evil.example", "/\\evil.example", "https://evil.example", "/%2F%2Fevil"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got := nextPath(p)
		u, err := url.Parse(got)
		if err != nil || !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || u.Host != "" || u.Scheme != "" ||
			strings.ContainsAny(got, "\\\t\r\n ") {
			t.Fatalf("nextPath(%q) = %q leaves the site", p, got)
		}
	})
}

// Bulk revocation in the UI: the preview counts the set; a stale hash is a
// 409 that revokes nothing; a wrong confirmation revokes nothing; the
// right one revokes exactly the previewed set.
func TestBulkRevoke(t *testing.T) {
	e := newEnv(t)
	te := e.te
	for _, id := range []string{"lot-a-1", "lot-a-2", "lot-b-1"} {
		lot := "A"
		if strings.Contains(id, "-b-") {
			lot = "B"
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		if _, err := te.CA.Issue(t.Context(), ca.IssueRequest{DeviceID: id, CSR: csr, Metadata: map[string]string{"lot": lot}}); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := e.login(t, "operator", testPassword)
	resp, page := c.do(http.MethodGet, "/bulk-revoke?meta=lot%3DA", nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "2 active device(s), 2 valid certificate(s)") {
		t.Fatalf("preview: %d %s", resp.StatusCode, page)
	}
	hash := regexp.MustCompile(`name="hash" value="([0-9a-f]+)"`).FindStringSubmatch(page)[1]
	form := url.Values{"csrf": {c.csrf}, "meta": {"lot=A"}, "hash": {hash}, "count": {"2"}, "reason": {"keyCompromise"}, "confirm": {"3"}}
	if resp, _ := c.do(http.MethodPost, "/bulk-revoke", form); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a wrong confirmation: %d, want 400", resp.StatusCode)
	}
	form.Set("confirm", "2")
	form.Set("hash", strings.Repeat("0", 64))
	if resp, body := c.do(http.MethodPost, "/bulk-revoke", form); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "changed since the preview") {
		t.Fatalf("a stale hash: %d", resp.StatusCode)
	}
	if d, _ := te.Store.GetDevice(t.Context(), "lot-a-1"); d.Status != pki.DeviceActive {
		t.Fatal("a refused bulk revocation revoked a device")
	}
	form.Set("hash", hash)
	if resp, body := c.do(http.MethodPost, "/bulk-revoke", form); resp.StatusCode != 200 || !strings.Contains(body, "2 certificate(s) revoked") {
		t.Fatalf("bulk revoke: %d %s", resp.StatusCode, body)
	}
	for id, want := range map[string]pki.DeviceStatus{"lot-a-1": pki.DeviceRevoked, "lot-a-2": pki.DeviceRevoked, "lot-b-1": pki.DeviceActive} {
		if d, _ := te.Store.GetDevice(t.Context(), id); d.Status != want {
			t.Errorf("%s is %s, want %s", id, d.Status, want)
		}
	}
}
