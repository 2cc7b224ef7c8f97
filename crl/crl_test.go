package crl_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/crl"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/sqlite"
)

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

// A real CA and SQLite store: the CRL must verify with openssl against the
// real hierarchy and list what the CA revoked.
func TestCRLWithOpenSSL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, err := ca.Init(ctx, ca.InitOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(ctx, ca.Config{Hierarchy: h, Store: st, PublicURL: "http://127.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{time.Now()}
	u, err := crl.New(crl.Config{Issuer: h.Intermediate(), Signer: h.Signer(), Store: st, URL: "http://127.0.0.1:8080/crl", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	first, err := u.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	csr := makeCSR(t)
	iss, err := c.Issue(ctx, ca.IssueRequest{DeviceID: "sensor-1", CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revoke(ctx, iss.Record.Serial, pki.ReasonKeyCompromise, pki.Actor{}); err != nil {
		t.Fatal(err)
	}
	second, err := u.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.Number <= first.Number {
		t.Fatalf("CRL number %d after %d", second.Number, first.Number)
	}

	srv := httptest.NewServer(u.Handler(false))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/pkix-crl" || resp.Header.Get("ETag") == "" {
		t.Fatalf("headers %v", resp.Header)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	crlPath := write("crl.der", der)
	chain := write("chain.pem", h.ChainPEM())
	out, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", crlPath, "-CAfile", chain, "-noout", "-text").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	text := string(out)
	serialHex := strings.ToUpper(string(iss.Record.Serial))
	if !strings.Contains(text, "verify OK") || !strings.Contains(strings.ReplaceAll(text, ":", ""), serialHex) ||
		!strings.Contains(text, "Key Compromise") || !strings.Contains(text, "Issuing Distribution Point") ||
		!strings.Contains(text, "URI:http://127.0.0.1:8080/crl") {
		t.Fatalf("openssl crl output:\n%s", text)
	}
	// The device certificate is refused by openssl when the CRL is checked.
	leaf := write("leaf.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: iss.Certificate.Raw}))
	crlPEM := write("crl.pem", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	out, _ = exec.Command("openssl", "verify", "-crl_check", "-CAfile", chain, "-CRLfile", crlPEM, leaf).CombinedOutput()
	if !strings.Contains(string(out), "certificate revoked") {
		t.Fatalf("openssl verify -crl_check: %s", out)
	}
	parsed, err := x509.ParseRevocationList(der)
	if err != nil || parsed.CheckSignatureFrom(h.Intermediate()) != nil || len(parsed.RevokedCertificateEntries) != 1 {
		t.Fatalf("parsed CRL: %v", err)
	}

	// A restart (a new updater) serves the stored CRL; an expired one is never served.
	u2, _ := crl.New(crl.Config{Issuer: h.Intermediate(), Signer: h.Signer(), Store: st, URL: "http://127.0.0.1:8080/crl", Clock: clk})
	if got, err := u2.Latest(ctx); err != nil || got.Number != second.Number {
		t.Fatalf("after restart: %+v, %v", got.Number, err)
	}
	clk.t = clk.t.Add(8 * 24 * time.Hour)
	rec := httptest.NewRecorder()
	u2.Handler(false).ServeHTTP(rec, httptest.NewRequest("GET", "/crl", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("expired CRL served: %d", rec.Code)
	}
	third, err := u2.RunOnce(ctx)
	if err != nil || third.Number <= second.Number {
		t.Fatalf("regenerated after expiry: %d, %v", third.Number, err)
	}
	if p, _ := x509.ParseRevocationList(third.DER); len(p.RevokedCertificateEntries) != 1 {
		t.Fatal("a revoked, unexpired certificate dropped out")
	}
	// Once the certificate itself has expired, it drops out of the next CRL.
	clk.t = iss.Record.NotAfter.Add(time.Hour)
	fourth, err := u2.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := x509.ParseRevocationList(fourth.DER); len(p.RevokedCertificateEntries) != 0 {
		t.Fatal("an expired certificate is still listed")
	}
}

func TestConfigInvariants(t *testing.T) {
	if _, err := crl.New(crl.Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
}
