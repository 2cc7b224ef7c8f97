package api_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/accounts"
	"github.com/fleetpki/fleetpki/api"
	"github.com/fleetpki/fleetpki/audit"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/sqlite"
)

// env is a real API over a real CA and a real SQLite store, served over TLS.
type env struct {
	t      *testing.T
	srv    *httptest.Server
	st     store.Store
	users  *accounts.Users
	creds  *accounts.Credentials
	ca     *ca.CA
	tokens map[pki.Role]string
	cred   string
}

// testClock is the CA's clock in these tests; a test may move it.
type testClock struct{ off time.Duration }

func (c *testClock) Now() time.Time { return time.Now().Add(c.off).UTC() }

func newEnv(t *testing.T, opts ...func(*api.Config)) *env {
	return newEnvClock(t, &testClock{}, opts...)
}

func newEnvClock(t *testing.T, clock pki.Clock, opts ...func(*api.Config)) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "fleetpki.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	h, err := ca.Init(ctx, ca.InitOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(ctx, ca.Config{Hierarchy: h, Store: st, Bulk: st, PublicURL: "http://127.0.0.1:8080", Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	users, creds := accounts.NewUsers(st, nil), accounts.NewCredentials(st, nil)
	cfg := api.Config{Enroller: ca.NewEnroller(c, creds, st), Revoker: c, Tokens: users, Credentials: creds,
		Directory: ca.NewDirectory(st, nil), Audit: audit.New(st, nil), PublicURL: "http://127.0.0.1:8080", Clients: c,
		Events: func(int) (<-chan pki.RevocationEvent, func()) { return make(chan pki.RevocationEvent), func() {} }}
	for _, o := range opts {
		o(&cfg)
	}
	handler, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(handler)
	pool := x509.NewCertPool()
	// The issuing CA is a trust anchor too, so devices that send only their
	// leaf (many do) are accepted.
	pool.AddCert(h.Root())
	pool.AddCert(h.Intermediate())
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12} // as serve configures it
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv, st: st, users: users, creds: creds, ca: c, tokens: map[pki.Role]string{}}
	for _, role := range []pki.Role{pki.RoleAdmin, pki.RoleOperator, pki.RoleAuditor} {
		if _, err := users.CreateUser(ctx, string(role)+"-user", role, "a long enough password", pki.Actor{Name: "test"}); err != nil {
			t.Fatal(err)
		}
		if e.tokens[role], err = users.CreateToken(ctx, string(role)+"-user", time.Hour, pki.Actor{Name: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	e.cred, _, err = creds.CreateCredential(ctx, accounts.CredentialSpec{Name: "line-1", DevicePattern: `sensor-[0-9]+`}, pki.Actor{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// do sends a request with an optional bearer token and returns the status and body.
func (e *env) do(client *http.Client, method, path, token string, body []byte) (int, []byte, http.Header) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if client == nil {
		client = e.srv.Client()
	}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func newKeyCSR(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		t.Fatal(err)
	}
	return k, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func jsonBody(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type problem struct {
	Type, Title, Detail, Code string
	Status                    int
}

func mustProblem(t *testing.T, status int, hdr http.Header, body []byte, wantStatus int) problem {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d: %s", status, wantStatus, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p problem
	if err := json.Unmarshal(body, &p); err != nil || p.Status != status || p.Code == "" || p.Title == "" || p.Type == "" {
		t.Fatalf("not a complete problem: %s (%v)", body, err)
	}
	return p
}

func TestEnrollAndAdminFlow(t *testing.T) {
	e := newEnv(t)
	key, csr := newKeyCSR(t)
	status, body, _ := e.do(nil, "POST", "/api/v1/enroll", e.cred, jsonBody(t, map[string]any{
		"device_id": "sensor-1", "csr": csr, "metadata": map[string]string{"lot": "2026-W41"}}))
	if status != http.StatusCreated {
		t.Fatalf("enroll: %d %s", status, body)
	}
	var out struct {
		DeviceID    string `json:"device_id"`
		Serial      string `json:"serial"`
		Certificate string `json:"certificate"`
		Chain       string `json:"chain"`
		OCSPURL     string `json:"ocsp_url"`
	}
	_ = json.Unmarshal(body, &out)
	if out.DeviceID != "sensor-1" || out.Serial == "" || out.OCSPURL != "http://127.0.0.1:8080/ocsp" || strings.Count(out.Chain, "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("enroll response = %s", body)
	}
	blk, _ := pem.Decode([]byte(out.Certificate))
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || cert.Subject.CommonName != "sensor-1" || !cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Fatalf("issued certificate: %v", err)
	}

	// Renewal over mTLS with the certificate just issued.
	tr := e.srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}
	mtls := &http.Client{Transport: tr}
	_, csr2 := newKeyCSR(t)
	status, body, _ = e.do(mtls, "POST", "/api/v1/renew", "", jsonBody(t, map[string]string{"csr": csr2}))
	if status != http.StatusCreated || !strings.Contains(string(body), `"device_id":"sensor-1"`) {
		t.Fatalf("renew: %d %s", status, body)
	}
	status, body, hdr := e.do(nil, "POST", "/api/v1/renew", "", jsonBody(t, map[string]string{"csr": csr2}))
	mustProblem(t, status, hdr, body, http.StatusUnauthorized)

	// Reads.
	status, body, _ = e.do(nil, "GET", "/api/v1/devices?metadata=lot=2026-W41", e.tokens[pki.RoleAuditor], nil)
	if status != 200 || !strings.Contains(string(body), `"id": "sensor-1"`) {
		t.Fatalf("list devices: %d %s", status, body)
	}
	status, body, _ = e.do(nil, "GET", "/api/v1/certificates?device_id=sensor-1&limit=1", e.tokens[pki.RoleAuditor], nil)
	if status != 200 || !strings.Contains(string(body), "next_cursor") {
		t.Fatalf("list certificates: %d %s", status, body)
	}

	// Revocation: idempotent, audited, unknown is 404.
	for range 2 {
		status, body, _ = e.do(nil, "POST", "/api/v1/certificates/"+out.Serial+"/revoke", e.tokens[pki.RoleOperator],
			jsonBody(t, map[string]string{"reason": "keyCompromise"}))
		if status != 200 || !strings.Contains(string(body), `"revocation_reason": "keyCompromise"`) {
			t.Fatalf("revoke: %d %s", status, body)
		}
	}
	status, body, hdr = e.do(nil, "POST", "/api/v1/certificates/abcdef/revoke", e.tokens[pki.RoleOperator], jsonBody(t, map[string]string{"reason": "keyCompromise"}))
	mustProblem(t, status, hdr, body, http.StatusNotFound)
	status, body, _ = e.do(mtls, "POST", "/api/v1/renew", "", jsonBody(t, map[string]string{"csr": csr2}))
	if status != http.StatusForbidden {
		t.Fatalf("renew with a revoked certificate: %d %s", status, body)
	}
	status, body, _ = e.do(nil, "GET", "/api/v1/audit?limit=500", e.tokens[pki.RoleAuditor], nil)
	if status != 200 || !strings.Contains(string(body), `"action": "certificate.revoke"`) || strings.Count(string(body), `"action": "certificate.revoke"`) != 1 {
		t.Fatalf("audit: %d %s", status, body)
	}
	if n, err := audit.New(e.st, nil).Verify(context.Background()); err != nil || n == 0 {
		t.Fatalf("audit chain: %d, %v", n, err)
	}
}

func TestEnrollBadInput(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, csr := newKeyCSR(t)
	disabledSecret, disabled, _ := e.creds.CreateCredential(ctx, accounts.CredentialSpec{Name: "off"}, pki.Actor{})
	if err := e.creds.DisableCredential(ctx, disabled.ID, pki.Actor{}); err != nil {
		t.Fatal(err)
	}
	usedSecret, _, _ := e.creds.CreateCredential(ctx, accounts.CredentialSpec{Name: "once", MaxUses: 1}, pki.Actor{})
	if status, body, _ := e.do(nil, "POST", "/api/v1/enroll", usedSecret, jsonBody(t, map[string]any{"device_id": "x-1", "csr": csr})); status != 201 {
		t.Fatalf("first use: %d %s", status, body)
	}
	good := map[string]any{"device_id": "sensor-2", "csr": csr}
	with := func(k string, v any) []byte {
		m := map[string]any{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return jsonBody(t, m)
	}
	tampered := []byte(csr)
	tampered[len(tampered)-40] ^= 1
	for _, tc := range []struct {
		name   string
		token  string
		body   []byte
		status int
	}{
		{"no credential", "", jsonBody(t, good), 401},
		{"unknown credential", "fpe_nope", jsonBody(t, good), 401},
		{"admin token as credential", e.tokens[pki.RoleAdmin], jsonBody(t, good), 401},
		{"disabled credential", disabledSecret, jsonBody(t, good), 403},
		{"used-up credential", usedSecret, jsonBody(t, good), 403},
		{"device id outside the pattern", e.cred, with("device_id", "camera-1"), 403},
		{"profile not allowed", e.cred, with("profile", "gateway"), 403},
		{"malformed JSON", e.cred, []byte(`{"device_id": "sensor-2",`), 400},
		{"unknown field", e.cred, with("subject", "CN=evil"), 400},
		{"oversized body", e.cred, with("csr", strings.Repeat("A", 70<<10)), 400},
		{"garbage CSR", e.cred, with("csr", "-----BEGIN CERTIFICATE REQUEST-----\nZm9v\n-----END CERTIFICATE REQUEST-----\n"), 400},
		{"bad CSR signature", e.cred, with("csr", string(tampered)), 400},
		{"missing CSR", e.cred, with("csr", ""), 400},
		{"control character in id", e.cred, with("device_id", "sensor-2\n"), 400},
		{"trailing data", e.cred, append(jsonBody(t, good), []byte(`{}`)...), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, hdr := e.do(nil, "POST", "/api/v1/enroll", tc.token, tc.body)
			mustProblem(t, status, hdr, body, tc.status)
		})
	}
	if _, err := e.st.GetDevice(ctx, "sensor-2"); err == nil {
		t.Fatal("a refused enrollment created the device")
	}
	creds, _ := e.creds.ListCredentials(ctx)
	for _, c := range creds {
		if c.Name == "line-1" && c.Uses != 0 {
			t.Fatalf("refused enrollments spent %d uses of the credential", c.Uses)
		}
	}
}

func TestEnrollIdempotency(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, csr := newKeyCSR(t)
	_, otherCSR := newKeyCSR(t)
	send := func(key string, body []byte) (int, map[string]any, http.Header) {
		req, _ := http.NewRequest("POST", e.srv.URL+"/api/v1/enroll", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.cred)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil, nil
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m, resp.Header
	}
	body := jsonBody(t, map[string]any{"device_id": "sensor-7", "csr": csr})
	s1, first, _ := send("key-1", body)
	s2, again, hdr := send("key-1", body)
	if s1 != 201 || s2 != 201 || first["serial"] != again["serial"] || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: %d %v / %d %v (%v)", s1, first["serial"], s2, again["serial"], hdr)
	}
	if s, m, _ := send("key-1", jsonBody(t, map[string]any{"device_id": "sensor-7", "csr": otherCSR})); s != 409 || m["code"] != "conflict" {
		t.Fatalf("same key, other body: %d %v", s, m)
	}
	if s, _, _ := send("key-2", body); s != 201 {
		t.Fatalf("new key: %d", s)
	}
	if s, m, _ := send(strings.Repeat("k", 300), body); s != 400 {
		t.Fatalf("overlong key: %d %v", s, m)
	}

	// Concurrent identical requests: one certificate.
	race := jsonBody(t, map[string]any{"device_id": "sensor-8", "csr": otherCSR})
	serials := make(chan any, 8)
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			if s, m, _ := send("race", race); s == 201 {
				serials <- m["serial"]
			} else {
				t.Errorf("concurrent request: %d %v", s, m)
			}
		}()
	}
	for range 8 {
		<-done
	}
	close(serials)
	var first8 any
	for s := range serials {
		if first8 == nil {
			first8 = s
		} else if s != first8 {
			t.Fatalf("concurrent identical requests got different serials: %v and %v", first8, s)
		}
	}
	p, err := e.st.ListCertificates(ctx, store.CertFilter{DeviceID: "sensor-8"})
	if err != nil || len(p.Items) != 1 {
		t.Fatalf("sensor-8 has %d certificates (%v), want 1", len(p.Items), err)
	}
}

func TestRenewRefusals(t *testing.T) {
	clock := &testClock{}
	e := newEnvClock(t, clock)
	key, csr := newKeyCSR(t)
	status, body, _ := e.do(nil, "POST", "/api/v1/enroll", e.cred, jsonBody(t, map[string]any{"device_id": "sensor-1", "csr": csr}))
	if status != 201 {
		t.Fatalf("enroll: %d %s", status, body)
	}
	var out struct {
		Certificate string `json:"certificate"`
	}
	_ = json.Unmarshal(body, &out)
	blk, _ := pem.Decode([]byte(out.Certificate))
	client := func(certDER []byte, k *ecdsa.PrivateKey) *http.Client {
		tr := e.srv.Client().Transport.(*http.Transport).Clone()
		// Send the certificate whatever the server asks for, as a device that
		// does not look at the acceptable CAs would.
		tr.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &tls.Certificate{Certificate: [][]byte{certDER}, PrivateKey: k}, nil
		}
		return &http.Client{Transport: tr}
	}
	_, csr2 := newKeyCSR(t)
	renewBody := jsonBody(t, map[string]string{"csr": csr2})

	// A certificate of another CA, with the same subject: refused.
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "sensor-1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	foreign, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &otherKey.PublicKey, otherKey)
	status, body, hdr := e.do(client(foreign, otherKey), "POST", "/api/v1/renew", "", renewBody)
	mustProblem(t, status, hdr, body, http.StatusForbidden)

	// Its own certificate, once expired (the CA's clock moves past NotAfter): refused.
	clock.off = 400 * 24 * time.Hour
	status, body, hdr = e.do(client(blk.Bytes, key), "POST", "/api/v1/renew", "", renewBody)
	if p := mustProblem(t, status, hdr, body, http.StatusForbidden); !strings.Contains(p.Detail, "expired") {
		t.Fatalf("expired certificate: %+v", p)
	}
}

func TestEnrollRateLimit(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.EnrollRate, c.EnrollBurst = 0.01, 2 })
	_, csr := newKeyCSR(t)
	for i := range 2 {
		if status, body, _ := e.do(nil, "POST", "/api/v1/enroll", e.cred, jsonBody(t, map[string]any{"device_id": fmt.Sprint("sensor-", i), "csr": csr})); status != 201 {
			t.Fatalf("enrollment %d within the burst: %d %s", i, status, body)
		}
	}
	status, body, hdr := e.do(nil, "POST", "/api/v1/enroll", e.cred, jsonBody(t, map[string]any{"device_id": "sensor-9", "csr": csr}))
	if p := mustProblem(t, status, hdr, body, http.StatusTooManyRequests); p.Code != "rate_limited" || hdr.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %+v, Retry-After %q", p, hdr.Get("Retry-After"))
	}
	if _, err := e.st.GetDevice(context.Background(), "sensor-9"); err == nil {
		t.Fatal("a rate-limited request enrolled the device")
	}
}

func TestCredentialWithoutReenroll(t *testing.T) {
	e := newEnv(t)
	secret, _, err := e.creds.CreateCredential(context.Background(), accounts.CredentialSpec{Name: "bootstrap", NoReenroll: true}, pki.Actor{})
	if err != nil {
		t.Fatal(err)
	}
	_, csr := newKeyCSR(t)
	if status, body, _ := e.do(nil, "POST", "/api/v1/enroll", e.cred, jsonBody(t, map[string]any{"device_id": "sensor-1", "csr": csr})); status != 201 {
		t.Fatalf("first enrollment: %d %s", status, body)
	}
	status, body, hdr := e.do(nil, "POST", "/api/v1/enroll", secret, jsonBody(t, map[string]any{"device_id": "sensor-1", "csr": csr}))
	mustProblem(t, status, hdr, body, http.StatusConflict)
	if status, body, _ := e.do(nil, "POST", "/api/v1/enroll", secret, jsonBody(t, map[string]any{"device_id": "sensor-2", "csr": csr})); status != 201 {
		t.Fatalf("a new device under a no-reenroll credential: %d %s", status, body)
	}
	// The default credential re-enrolls (a re-flashed device gets a new certificate).
	if status, body, _ := e.do(nil, "POST", "/api/v1/enroll", e.cred, jsonBody(t, map[string]any{"device_id": "sensor-1", "csr": csr})); status != 201 {
		t.Fatalf("re-enrollment: %d %s", status, body)
	}
}
