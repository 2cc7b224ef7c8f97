package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/expiry"
)

// Expiring certificates, end to end: with a window longer than the
// device profile's year, a freshly enrolled device is expiring: the
// webhook gets a notice it can verify with the shared secret, the API and
// the UI list the device, and the metric counts it.
func TestExpiryWebhook(t *testing.T) {
	secret := "an expiry secret the receiver shares"
	var mu sync.Mutex
	var got []expiry.Notice
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := expiry.Verify([]byte(secret), body, r.Header.Get(expiry.Header), time.Now(), time.Minute); err != nil {
			t.Errorf("the webhook's notice does not verify: %v", err)
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		var n expiry.Notice
		_ = json.Unmarshal(body, &n)
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	}))
	defer recv.Close()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	_ = os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)
	data := filepath.Join(dir, "data")
	// The first start makes the CA; the device is enrolled; the restart
	// with the webhook then finds it expiring.
	e := newEnrollEnvAt(t, data, "--expiry-window", "400d", "--expiry-webhook", recv.URL, "--expiry-webhook-secret-file", secretFile, "--expiry-interval", "1s")
	if r := e.enroll(t, "--device-id", "dev-1", "--out", filepath.Join(dir, "dev-1")); r.code != 0 {
		t.Fatalf("enroll: %s", r.stderr)
	}
	if !waitFor(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 }) {
		t.Fatal("the webhook got no notice within 10 s")
	}
	mu.Lock()
	n := got[0]
	mu.Unlock()
	crt := mustRead(t, filepath.Join(dir, "dev-1", "device.crt"))
	if n.Event != "certificate.expiring" || n.DeviceID != "dev-1" || n.Serial != certSerial(t, crt) || n.NotAfter.IsZero() {
		t.Fatalf("notice %+v", n)
	}
	token := mustRun(t, "", "user", "token", "--data-dir", data, "--name", "admin").lastLine()
	out, err := exec.Command("curl", "-sSfk", "-H", "Authorization: Bearer "+token, "https://"+e.srv.httpsAddr+"/api/v1/certificates?expiring_within=400d").Output()
	if err != nil || !strings.Contains(string(out), `"dev-1"`) {
		t.Fatalf("the API's expiring list: %v %s", err, out)
	}
	if out, _ := exec.Command("curl", "-sSk", "-H", "Authorization: Bearer "+token, "https://"+e.srv.httpsAddr+"/api/v1/certificates?expiring_within=30d").Output(); strings.Contains(string(out), `"dev-1"`) {
		t.Fatal("a certificate of a year is listed as expiring within 30 days")
	}
	if m := get(t, e.srv.url("/metrics"), 200, "", "fleetpki_certificates_expiring"); !strings.Contains(m, "fleetpki_certificates_expiring 1") &&
		!strings.Contains(m, "fleetpki_expiry_notices_total{result=\"delivered\"} 1") {
		t.Fatalf("metrics lack the expiring count:\n%s", m)
	}
	pw := strings.TrimSpace(string(mustRead(t, filepath.Join(data, "admin-password"))))
	s, code := uiSignIn(t, "https://"+e.srv.httpsAddr, e.srv.httpsAddr, "admin", pw)
	if code != 303 {
		t.Fatalf("sign-in: %d", code)
	}
	if page, _ := s.get(t, "/expiring?days=400"); !strings.Contains(page, "/devices/dev-1") {
		t.Fatalf("the UI's expiring page lacks dev-1:\n%s", page)
	}
}

// newEnrollEnvAt is newEnrollEnv on a given data directory with extra serve flags.
func newEnrollEnvAt(t *testing.T, data string, extra ...string) *enrollEnv {
	t.Helper()
	srv := startServe(t, append([]string{"--data-dir", data, "--http-addr", "127.0.0.1:0", "--enroll-rate", "0"}, extra...)...)
	secret := mustRun(t, "", "credential", "create", "--data-dir", data, "--name", "station", "--device-pattern", `dev-[0-9]+`).lastLine()
	return &enrollEnv{srv: srv, data: data, secret: secret, args: []string{"--server", "https://" + srv.httpsAddr, "--fingerprint", srv.fingerprint}}
}
