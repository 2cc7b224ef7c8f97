package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/internal/testenv"
)

// status is GET url's status code.
func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The issuing key in SoftHSM2, end to end: init creates the keys in the
// token and the data directory holds none; serve enrolls, revokes, and
// publishes a CRL and OCSP answers that openssl verifies against the chain
// and zlint passes; the token pulled mid-serve fails readiness and answers
// enrollments 503, and both recover when it is back; a wrong PIN stops
// init and serve with a clear error.
func TestHSMEndToEnd(t *testing.T) {
	needTool(t, "openssl", "curl")
	hsm := testenv.SoftHSM(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	pinFile := strings.SplitN(hsm.URI, "pin-source=", 2)[1]

	// A wrong PIN: a one-line error, and no CA.
	_ = os.WriteFile(pinFile, []byte("0000"), 0o600)
	r := runCLI(t, "", "init", "--data-dir", data, "--kms", hsm.URI)
	if r.code == 0 || !strings.Contains(r.stderr, "refused the PIN") {
		t.Fatalf("init with a wrong PIN: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(data, "ca")); err == nil {
		t.Fatal("a failed init left a CA directory")
	}
	_ = os.WriteFile(pinFile, []byte(hsm.PIN), 0o600)
	mustRun(t, "", "init", "--data-dir", data, "--kms", hsm.URI)
	for _, k := range hsm.PrivateKeys(t) {
		if !strings.Contains(k, "never extractable") {
			t.Errorf("token key %s is extractable", k)
		}
	}

	srv := startServe(t, "--data-dir", data, "--http-addr", "127.0.0.1:0", "--enroll-rate", "0")
	if !strings.Contains(srv.log.String(), `issuing_key="pkcs11:id=`) {
		t.Fatalf("serve does not say the issuing key is in the token:\n%s", srv.log.String())
	}
	secret := mustRun(t, "", "credential", "create", "--data-dir", data, "--name", "line").lastLine()
	e := &enrollEnv{srv: srv, data: data, secret: secret, args: []string{"--server", "https://" + srv.httpsAddr, "--fingerprint", srv.fingerprint}}
	devDir := filepath.Join(dir, "dev-1")
	if r := e.enroll(t, "--device-id", "dev-1", "--out", devDir); r.code != 0 {
		t.Fatalf("enroll: %s", r.stderr)
	}
	chain := filepath.Join(devDir, "chain.pem")
	root := filepath.Join(devDir, "root.pem")
	if out, err := exec.Command("openssl", "verify", "-CAfile", root, "-untrusted", chain, filepath.Join(devDir, "device.crt")).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify: %v %s", err, out)
	}
	crt := mustRead(t, filepath.Join(devDir, "device.crt"))
	serial := certSerial(t, crt)
	if r := runCLI(t, "", "revoke", "--data-dir", data, "--serial", serial, "--reason", "keyCompromise"); r.code != 0 {
		t.Fatalf("revoke: %s", r.stderr)
	}
	issuer := filepath.Join(dir, "issuer.pem")
	chainPEM := string(mustRead(t, chain))
	_ = os.WriteFile(issuer, []byte(chainPEM[:strings.Index(chainPEM, "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----\n")]), 0o600)
	respFile := filepath.Join(dir, "ocsp.der")
	if !waitFor(10*time.Second, func() bool {
		out, _ := exec.Command("openssl", "ocsp", "-issuer", issuer, "-cert", filepath.Join(devDir, "device.crt"), "-url", srv.url("/ocsp"),
			"-CAfile", root, "-no_nonce", "-respout", respFile).CombinedOutput()
		return strings.Contains(string(out), "Response verify OK") && strings.Contains(string(out), ": revoked")
	}) {
		t.Fatal("OCSP does not say revoked with a verified signature")
	}
	crlFile := filepath.Join(dir, "crl.pem")
	if !waitFor(10*time.Second, func() bool {
		_ = os.WriteFile(crlFile, []byte(get(t, srv.url("/crl.pem"), 200, "", "")), 0o600)
		out, err := exec.Command("openssl", "crl", "-in", crlFile, "-CAfile", chain, "-noout", "-text").CombinedOutput()
		return err == nil && strings.Contains(string(out), "verify OK") && strings.Contains(strings.ToLower(string(out)), strings.ToLower(serial))
	}) {
		t.Fatal("the CRL does not list the revoked serial with a verified signature")
	}

	// zlint on everything the token signed: the device certificate, the
	// OCSP responder's certificate, the CRL (and the CAs themselves).
	chainCerts := parsePEMCerts(t, mustRead(t, chain))
	testenv.LintCert(t, "device certificate", parsePEMCerts(t, crt)[0])
	testenv.LintCert(t, "issuing CA", chainCerts[0], testenv.CALints...)
	testenv.LintCert(t, "root CA", chainCerts[1], testenv.CALints...)
	resp, err := ocsp.ParseResponse(mustRead(t, respFile), chainCerts[0])
	if err != nil || resp.Certificate == nil {
		t.Fatalf("OCSP response: %v (responder certificate %v)", err, resp != nil && resp.Certificate != nil)
	}
	testenv.LintCert(t, "OCSP responder", resp.Certificate)
	blk, _ := pem.Decode(mustRead(t, crlFile))
	testenv.LintCRL(t, "CRL", blk.Bytes)
	testenv.LintCACRL(t, "root CRL", []byte(get(t, srv.url("/crl/root"), 200, "application/pkix-crl", "")))
	// The root's answer about the issuing CA, signed in the token.
	rootAnswer := filepath.Join(dir, "root-answer.der")
	if out, err := exec.Command("openssl", "ocsp", "-issuer", root, "-cert", issuer, "-url", srv.url("/ocsp"), "-CAfile", root, "-no_nonce",
		"-respout", rootAnswer).CombinedOutput(); err != nil || !strings.Contains(string(out), ": good") {
		t.Fatalf("OCSP about the issuing CA: %v %s", err, out)
	}
	testenv.LintOCSP(t, "the root's answer", mustRead(t, rootAnswer), chainCerts[1])

	if found := testenv.FindPrivateKeys(t, data); len(found) != 0 {
		t.Fatalf("private keys in the data directory or its database: %v", found)
	}

	// The token goes away: not ready, enrollment 503 with nothing stored.
	get(t, srv.url("/readyz"), 200, "", "ready")
	hsm.Pull(t)
	if !waitFor(5*time.Second, func() bool { return status(t, srv.url("/readyz")) == 503 }) {
		t.Fatal("readiness stays 200 with the token pulled")
	}
	before := countRows(t, data, "SELECT count(*) FROM certificates")
	out, _ := exec.Command("curl", "-s", "--cacert", root, "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer "+secret,
		"-H", "Content-Type: application/json", "--data-binary", `{"device_id":"dev-2","csr":`+jsonString(newCSRPEM(t))+`}`,
		"https://"+srv.httpsAddr+"/api/v1/enroll").Output()
	if string(out) != "503" {
		t.Fatalf("enroll with the token pulled: HTTP %s, want 503", out)
	}
	if n := countRows(t, data, "SELECT count(*) FROM certificates"); n != before {
		t.Fatalf("%d certificates stored by the failed enrollment", n-before)
	}
	hsm.Plug(t)
	if !waitFor(10*time.Second, func() bool { return status(t, srv.url("/readyz")) == 200 }) {
		t.Fatal("readiness does not recover when the token is back")
	}
	if r := e.enroll(t, "--device-id", "dev-3", "--out", filepath.Join(dir, "dev-3")); r.code != 0 {
		t.Fatalf("enroll after the token came back: %s", r.stderr)
	}

	// A wrong PIN at start: serve refuses to start, saying why.
	srv.stop(t)
	_ = os.WriteFile(pinFile, []byte("0000"), 0o600)
	r = runCLI(t, "", "serve", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0", "--mqtt-addr", "")
	if r.code == 0 || !strings.Contains(r.stderr, "refused the PIN") {
		t.Fatalf("serve with a wrong PIN: exit %d\n%s", r.code, r.stderr)
	}
}

func parsePEMCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// newCSRPEM is a PEM CSR for a new P-256 key.
func newCSRPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
