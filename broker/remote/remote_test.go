package remote

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/crl"
	"github.com/fleetpki/fleetpki/internal/testenv"
	"github.com/fleetpki/fleetpki/ocspresponder"
	"github.com/fleetpki/fleetpki/pki"
)

type clock struct{ t atomic.Pointer[time.Time] }

func (c *clock) Now() time.Time      { return *c.t.Load() }
func (c *clock) add(d time.Duration) { t := c.Now().Add(d); c.t.Store(&t) }
func newClock() *clock               { c := &clock{}; t := time.Now(); c.t.Store(&t); return c }

// env is a real CA with the real OCSP responder and CRL behind HTTP servers.
type env struct {
	ca      *ca.CA
	h       *ca.Hierarchy
	ocsp    *httptest.Server
	crl     *httptest.Server
	crls    *crl.Updater
	down    atomic.Bool // the OCSP server answers 503
	slow    atomic.Bool // the OCSP server takes 2 s
	fetches atomic.Int64
	te      *testenv.Env
	cache   *ocspresponder.CacheSource
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	te := testenv.New(t, testenv.Options{PublicURL: "http://127.0.0.1:1"})
	st, h, c := te.Store, te.Hierarchy, te.CA
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rc, err := c.IssueOCSPResponderCert(ctx, key.Public(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := ocspresponder.NewCacheSource(ocspresponder.CacheConfig{Signer: &ocspresponder.Signer{Issuer: h.Intermediate(), Responder: rc, Key: key}, Lookups: st})
	if err != nil {
		t.Fatal(err)
	}
	events, stop := c.Subscribe(16)
	t.Cleanup(stop)
	go func() { _ = cache.Run(context.Background(), events) }()
	src, _ := ocspresponder.NewFilterSource(h.Intermediate(), cache)
	e := &env{ca: c, h: h, te: te, cache: cache}
	responder := ocspresponder.NewResponder(src, nil, nil)
	e.ocsp = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.fetches.Add(1)
		if e.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if e.slow.Load() {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		responder.ServeHTTP(w, r)
	}))
	t.Cleanup(e.ocsp.Close)
	e.crls, err = crl.New(crl.Config{Issuer: h.Intermediate(), Signer: h.Signer(), Store: st, URL: "http://127.0.0.1:1/crl", NoDelta: true})
	if err != nil {
		t.Fatal(err)
	}
	e.crl = httptest.NewServer(e.crls.Handler(false))
	t.Cleanup(e.crl.Close)
	return e
}

func (e *env) issue(t *testing.T, id string) *x509.Certificate {
	t.Helper()
	iss, _ := e.te.Issue(t, id)
	return iss.Certificate
}

// revoke revokes c and waits until the responder has heard of it (the
// revocation event reaches its cache asynchronously, in milliseconds).
func (e *env) revoke(t *testing.T, c *x509.Certificate) {
	t.Helper()
	e.te.Revoke(t, c)
	e.cache.Revoked(pki.NewSerial(c.SerialNumber))
}

func TestOCSPAnswers(t *testing.T) {
	e := newEnv(t)
	clk := newClock()
	c, err := New(Config{URL: e.ocsp.URL, MaxAge: time.Minute, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	good, bad := e.issue(t, "d-1"), e.issue(t, "d-2")
	inter := e.h.Intermediate()
	if r, err := c.Revoked(ctx, good, inter); r || err != nil {
		t.Fatalf("good: %v, %v", r, err)
	}
	e.revoke(t, bad)
	if r, err := c.Revoked(ctx, bad, inter); !r || err != nil {
		t.Fatalf("revoked: %v, %v", r, err)
	}
	// The good answer is cached until MaxAge: no new fetch.
	n := e.fetches.Load()
	if r, err := c.Revoked(ctx, good, inter); r || err != nil || e.fetches.Load() != n {
		t.Fatalf("cached good: %v, %v, %d fetches", r, err, e.fetches.Load()-n)
	}
	// Revoked later: seen once the cached answer has aged out.
	e.revoke(t, good)
	clk.add(61 * time.Second)
	if r, err := c.Revoked(ctx, good, inter); !r || err != nil {
		t.Fatalf("revoked after the cache expired: %v, %v", r, err)
	}

	// Another CA's certificate: the responder refuses it (unauthorized),
	// which is an error, never "not revoked".
	other := t.TempDir()
	oh, err := ca.Init(ctx, ca.InitOptions{DataDir: other})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: good.SerialNumber, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, oh.Intermediate(), key.Public(), oh.Signer())
	foreign, _ := x509.ParseCertificate(der)
	if r, err := c.Revoked(ctx, foreign, oh.Intermediate()); err == nil {
		t.Fatalf("foreign certificate: %v, nil error", r)
	}
}

func TestFailClosedAndGrace(t *testing.T) {
	e := newEnv(t)
	clk := newClock()
	ctx := t.Context()
	inter := e.h.Intermediate()
	known, fresh := e.issue(t, "d-1"), e.issue(t, "d-2")
	closed, _ := New(Config{URL: e.ocsp.URL, MaxAge: time.Minute, Clock: clk})
	grace, _ := New(Config{URL: e.ocsp.URL, MaxAge: time.Minute, FailOpenGrace: 10 * time.Minute, Clock: clk})
	for _, c := range []*Checker{closed, grace} {
		if r, err := c.Revoked(ctx, known, inter); r || err != nil {
			t.Fatal(r, err)
		}
	}
	e.down.Store(true)
	clk.add(2 * time.Minute) // past MaxAge: a fresh answer is needed
	if _, err := closed.Revoked(ctx, known, inter); err == nil {
		t.Fatal("fail-closed checker admitted a device with the responder down")
	}
	if r, err := grace.Revoked(ctx, known, inter); r || err != nil {
		t.Fatalf("within the grace: %v, %v; want admitted", r, err)
	}
	if _, err := grace.Revoked(ctx, fresh, inter); err == nil {
		t.Fatal("grace admitted a device never seen good")
	}
	clk.add(10 * time.Minute)
	if _, err := grace.Revoked(ctx, known, inter); err == nil {
		t.Fatal("grace admitted a device whose last good answer is older than the grace")
	}
}

func TestSlowResponderDoesNotStallOthers(t *testing.T) {
	e := newEnv(t)
	fast := newEnv(t)
	ctx := t.Context()
	e.slow.Store(true)
	slowCert := e.issue(t, "slow")
	fastCert := fast.issue(t, "fast")
	slowC, _ := New(Config{URL: e.ocsp.URL, Timeout: 300 * time.Millisecond})
	fastC, _ := New(Config{URL: fast.ocsp.URL, Timeout: 300 * time.Millisecond})
	done := make(chan error, 1)
	start := time.Now()
	go func() { _, err := slowC.Revoked(ctx, slowCert, e.h.Intermediate()); done <- err }()
	if r, err := fastC.Revoked(ctx, fastCert, fast.h.Intermediate()); r || err != nil {
		t.Fatal(r, err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("a fast check took %v while a slow one was pending", d)
	}
	if err := <-done; err == nil {
		t.Fatal("the slow responder's check succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the slow check took %v, want about the 300 ms timeout", d)
	}
	// Concurrent checks of one serial share one fetch.
	e.slow.Store(false)
	n := e.fetches.Load()
	other := e.issue(t, "shared")
	errs := make(chan error, 8)
	for range 8 {
		go func() { _, err := slowC.Revoked(ctx, other, e.h.Intermediate()); errs <- err }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := e.fetches.Load() - n; got > 2 {
		t.Errorf("8 concurrent checks of one serial made %d fetches", got)
	}
}

func TestCRLFallback(t *testing.T) {
	e := newEnv(t)
	clk := newClock()
	ctx := t.Context()
	inter := e.h.Intermediate()
	good, bad := e.issue(t, "d-1"), e.issue(t, "d-2")
	e.revoke(t, bad)
	if _, err := e.crls.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	e.down.Store(true)
	c, _ := New(Config{URL: e.ocsp.URL, CRLURL: e.crl.URL, Clock: clk})
	if r, err := c.Revoked(ctx, good, inter); r || err != nil {
		t.Fatalf("good from the CRL: %v, %v", r, err)
	}
	if r, err := c.Revoked(ctx, bad, inter); !r || err != nil {
		t.Fatalf("revoked from the CRL: %v, %v", r, err)
	}
	// An expired CRL is no answer.
	clk.add(8 * 24 * time.Hour)
	stale, _ := New(Config{URL: e.ocsp.URL, CRLURL: e.crl.URL, Clock: clk})
	if _, err := stale.Revoked(ctx, good, inter); err == nil {
		t.Fatal("answered from an expired CRL")
	}
	// A CRL from another CA is no answer either.
	other := newEnv(t)
	if _, err := other.crls.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	foreign, _ := New(Config{URL: e.ocsp.URL, CRLURL: other.crl.URL})
	if _, err := foreign.Revoked(ctx, good, inter); err == nil {
		t.Fatal("answered from another CA's CRL")
	}
}
