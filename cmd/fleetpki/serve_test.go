package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetpki/fleetpki/store/postgres/pgtest"
)

func TestServeSQLite(t *testing.T) {
	t.Parallel()
	testServeTwice(t)
}

func TestServePostgres(t *testing.T) {
	t.Parallel()
	testServeTwice(t, "--database-url", pgtest.NewDatabase(t))
}

// testServeTwice starts serve on an empty data directory, checks what the
// first start creates and what the listener answers, stops it with SIGTERM,
// and starts it again to check that everything is reused.
func testServeTwice(t *testing.T, extra ...string) {
	dir := t.TempDir()
	args := append([]string{"--data-dir", dir, "--http-addr", "127.0.0.1:0"}, extra...)

	first := startServe(t, args...)
	pwFile := filepath.Join(dir, "admin-password")
	fi, err := os.Stat(pwFile)
	if err != nil {
		t.Fatalf("first start wrote no admin password file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("admin-password mode = %v, want 0600", fi.Mode().Perm())
	}
	pw, _ := os.ReadFile(pwFile)
	password := strings.TrimSpace(string(pw))
	if len(password) < 12 {
		t.Fatalf("admin password %q is too short", password)
	}

	get(t, first.url("/healthz"), http.StatusOK, "text/plain; charset=utf-8", "ok")
	get(t, first.url("/readyz"), http.StatusOK, "", "ready")
	chain := get(t, first.url("/ca.pem"), http.StatusOK, "application/x-pem-file", "-----BEGIN CERTIFICATE-----")
	if n := countPEM(chain); n != 2 {
		t.Errorf("/ca.pem holds %d certificates, want 2 (intermediate, root)", n)
	}
	get(t, first.url("/ca/intermediate.crt"), http.StatusOK, "application/pkix-cert", "")
	root := get(t, first.url("/ca/root.crt"), http.StatusOK, "application/pkix-cert", "")
	sum := sha256.Sum256([]byte(root))
	if got := hex.EncodeToString(sum[:]); got != first.fingerprint {
		t.Errorf("SHA-256 of /ca/root.crt = %s, logged root_sha256 = %s", got, first.fingerprint)
	}
	if got := opensslFingerprint(t, root); got != "" && got != first.fingerprint {
		t.Errorf("openssl fingerprint of /ca/root.crt = %s, logged root_sha256 = %s", got, first.fingerprint)
	}
	metrics := get(t, first.url("/metrics"), http.StatusOK, "", "")
	for _, want := range []string{
		`fleetpki_http_requests_total{code="200",route="/healthz"} 1`,
		`fleetpki_http_request_duration_seconds_bucket`,
		"go_goroutines",
		"process_cpu_seconds_total",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	first.stop(t)
	log := first.log.String()
	if strings.Contains(log, password) {
		t.Error("the admin password appears in the log")
	}
	for _, want := range []string{"created the admin user", "password_file=" + pwFile, "msg=stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("first start's log lacks %q\n%s", want, log)
		}
	}

	second := startServe(t, args...)
	if second.fingerprint != first.fingerprint {
		t.Errorf("second start has root %s, first had %s", second.fingerprint, first.fingerprint)
	}
	if pw2, _ := os.ReadFile(pwFile); string(pw2) != string(pw) {
		t.Error("second start changed the admin password file")
	}
	get(t, second.url("/readyz"), http.StatusOK, "", "ready")
	second.stop(t)
	if log := second.log.String(); strings.Contains(log, "created the admin user") || !strings.Contains(log, "admin user exists") {
		t.Errorf("second start did not reuse the admin user\n%s", log)
	}
}

// get fetches url and checks the status, the content type (if wantType is
// set) and that the body contains wantBody; it returns the body.
func get(t *testing.T, url string, wantCode int, wantType, wantBody string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != wantCode {
		t.Errorf("GET %s: status %d, want %d", url, resp.StatusCode, wantCode)
	}
	if ct := resp.Header.Get("Content-Type"); wantType != "" && ct != wantType {
		t.Errorf("GET %s: Content-Type %q, want %q", url, ct, wantType)
	}
	if !strings.Contains(string(b), wantBody) {
		t.Errorf("GET %s: body %q lacks %q", url, truncateForLog(string(b)), wantBody)
	}
	return string(b)
}

func countPEM(s string) int {
	n, rest := 0, []byte(s)
	for {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return n
		}
		n++
	}
}

// opensslFingerprint asks OpenSSL for the SHA-256 fingerprint of a DER
// certificate, as an operator would; "" (and a log line) when openssl is missing.
func opensslFingerprint(t *testing.T, der string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is not installed")
		}
		t.Log("openssl is not installed; skipping its fingerprint check")
		return ""
	}
	cmd := exec.Command("openssl", "x509", "-inform", "DER", "-noout", "-fingerprint", "-sha256")
	cmd.Stdin = strings.NewReader(der)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl x509: %v", err)
	}
	// "sha256 Fingerprint=AB:CD:…"
	_, fp, ok := strings.Cut(strings.TrimSpace(string(out)), "=")
	if !ok {
		t.Fatalf("unexpected openssl output %q", out)
	}
	return strings.ToLower(strings.ReplaceAll(fp, ":", ""))
}

func truncateForLog(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
