package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/api"
	"github.com/fleetpki/fleetpki/store/postgres/pgtest"
	"github.com/fleetpki/fleetpki/web"
)

// The hostile-operator suite: what a curious operator, a stolen session or
// an attacker at the sign-in form tries against a running serve.

// insecureClient talks to serve's HTTPS listener (its certificate is from
// the test's own CA) from a given local address ("" for any).
func insecureClient(local string, jar http.CookieJar) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	return &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
}

var (
	loginTokenRE = regexp.MustCompile(`name="token" value="([^"]+)"`)
	csrfTokenRE  = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// uiSession is a browser-like session on the admin UI.
type uiSession struct {
	c    *http.Client
	base string
	csrf string
}

// uiSignIn signs in (or tries to) and returns the session and the sign-in's status.
func uiSignIn(t *testing.T, base, local, user, password string) (*uiSession, int) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	s := &uiSession{c: insecureClient(local, jar), base: base}
	page, _ := s.get(t, "/login")
	m := loginTokenRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no sign-in token on the login page:\n%s", page)
	}
	resp, err := s.c.PostForm(base+"/login", url.Values{"username": {user}, "password": {password}, "token": {m[1]}, "next": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusSeeOther {
		page, _ := s.get(t, "/account")
		if m := csrfTokenRE.FindStringSubmatch(page); m != nil {
			s.csrf = m[1]
		}
	}
	return s, resp.StatusCode
}

func (s *uiSession) get(t *testing.T, path string) (string, int) {
	t.Helper()
	resp, err := s.c.Get(s.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

// badTexts are the hostile text values: a NUL, a NUL inside, a lone
// continuation byte, an overlong encoding and a truncated sequence.
var badTexts = []string{"%00", "dev%001", "%FF", "%C0%AF", "a%C3"}

// TestHostileTextOnEveryRoute sends NUL and invalid UTF-8 in the path, the
// query, JSON bodies and forms to every route of the API's and the UI's
// route tables, authenticated, on SQLite and on Postgres: every answer is
// a 4xx, never a 5xx (Postgres refuses such text in its columns).
func TestHostileTextOnEveryRoute(t *testing.T) {
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			data := filepath.Join(t.TempDir(), "data")
			storeArgs := []string{"--data-dir", data}
			if store == "postgres" {
				storeArgs = append(storeArgs, "--database-url", pgtest.NewDatabase(t))
			}
			srv := startServe(t, append([]string{"--http-addr", "127.0.0.1:0", "--mqtt-addr", ""}, storeArgs...)...)
			token := mustRun(t, "", append([]string{"user", "token", "--name", "admin"}, storeArgs...)...).lastLine()
			pw, _ := os.ReadFile(filepath.Join(data, "admin-password"))
			base := "https://" + srv.httpsAddr
			ui, code := uiSignIn(t, base, "", "admin", strings.TrimSpace(string(pw)))
			if code != http.StatusSeeOther || ui.csrf == "" {
				t.Fatalf("admin sign-in: %d", code)
			}
			var failures []string
			try := func(c *http.Client, method, path, ctype string, body []byte, auth bool) {
				u := base + path
				if strings.HasPrefix(path, "http") {
					u = path
				}
				req, err := http.NewRequest(method, u, bytes.NewReader(body))
				if err != nil {
					t.Fatalf("%s %s: %v", method, path, err)
				}
				if ctype != "" {
					req.Header.Set("Content-Type", ctype)
				}
				if auth {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := c.Do(req)
				if err != nil {
					failures = append(failures, fmt.Sprintf("%s %s: %v", method, path, err))
					return
				}
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
				resp.Body.Close()
				if resp.StatusCode < 400 || resp.StatusCode > 499 {
					failures = append(failures, fmt.Sprintf("%s %s (%s %q): HTTP %d", method, path, ctype, body, resp.StatusCode))
				}
			}
			apiClient := insecureClient("", nil)
			for _, rt := range api.Routes() {
				for _, bad := range badTexts {
					raw, _ := url.PathUnescape(bad)
					params := strings.NewReplacer("{id}", bad, "{serial}", bad, "*", bad)
					if strings.Contains(rt.Pattern, "{") {
						try(apiClient, rt.Method, params.Replace(rt.Pattern), "", nil, true)
					}
					try(apiClient, rt.Method, rt.Pattern+"?q="+bad+"&status="+bad+"&device_id="+bad+"&cursor="+bad+"&metadata=k%3D"+bad,
						"", nil, true)
					if rt.Method == http.MethodPost && !strings.Contains(rt.Pattern, "{") {
						j, _ := json.Marshal(map[string]string{"reason": raw, "device_id": raw, "csr": raw, "name": raw, "device_pattern": raw})
						try(apiClient, rt.Method, rt.Pattern, "application/json", j, true)
						try(apiClient, rt.Method, rt.Pattern, "application/json", []byte(`{"name":"`+raw+`"}`), true)
					}
				}
			}
			for _, rt := range web.Routes() {
				for _, bad := range badTexts {
					raw, _ := url.PathUnescape(bad)
					p := strings.NewReplacer("{id}", bad, "{serial}", bad, "{name}", bad, "*", bad).Replace(rt.Pattern)
					if rt.Method == http.MethodGet {
						try(ui.c, rt.Method, p+"?q="+bad+"&meta=k%3D"+bad+"&status="+bad+"&cursor="+bad+"&next="+bad, "", nil, false)
						continue
					}
					form := url.Values{"csrf": {ui.csrf}, "confirm": {raw}, "reason": {raw}, "name": {raw}, "meta": {"lot=" + raw},
						"hash": {raw}, "pattern": {raw}, "username": {raw}, "password": {raw}, "current": {raw}, "new": {raw}, "role": {raw},
						"token": {raw}, "profiles": {raw}}
					try(ui.c, rt.Method, p, "application/x-www-form-urlencoded", []byte(form.Encode()), false)
				}
			}
			// The public listener refuses them too (OCSP keeps its own answer).
			for _, p := range []string{"/healthz?x=%00", "/crl%00", "/ca.pem?%FF=1"} {
				try(insecureClient("", nil), http.MethodGet, srv.url(p), "", nil, false)
			}
			for _, f := range failures {
				t.Error(f)
			}
			if t.Failed() {
				t.Logf("serve's log:\n%s", srv.log.String())
			}
			// The session survived the hostile POSTs (logout among them).
			if _, code := ui.get(t, "/devices"); code != http.StatusOK {
				t.Errorf("after the hostile requests the admin session answers %d", code)
			}
		})
	}
}

// vmHWM is a process's peak resident memory, from /proc.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestHostileSignIn: twenty wrong passwords for one user at once from one
// address are counted before hashing (at most five are checked, the others
// get 429); twenty from twenty addresses are all checked but never more
// than a few at a time, so the peak memory stays bounded; the admin signs
// in from another address throughout; a password change ends the user's
// other sessions; a device pattern that escapes its anchors is refused by
// the API and the CLI.
func TestHostileSignIn(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	srv := startServe(t, "--data-dir", data, "--http-addr", "127.0.0.1:0", "--mqtt-addr", "")
	base := "https://" + srv.httpsAddr
	pw, _ := os.ReadFile(filepath.Join(data, "admin-password"))
	password := strings.TrimSpace(string(pw))
	pid := srv.cmd.Process.Pid
	before := vmHWM(t, pid)

	burst := func(local func(i int) string) map[int]int {
		var mu sync.Mutex
		codes := map[int]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 20 {
			wg.Go(func() {
				<-start
				_, code := uiSignIn(t, base, local(i), "admin", "wrong password "+strconv.Itoa(i))
				mu.Lock()
				codes[code]++
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		return codes
	}
	same := burst(func(int) string { return "127.0.0.1" })
	if same[http.StatusUnauthorized] > 5 || same[http.StatusTooManyRequests] < 15 {
		t.Errorf("20 wrong passwords from one address: %v; want at most 5 checked (401), the rest 429", same)
	}
	spread := burst(func(i int) string { return fmt.Sprintf("127.0.1.%d", i+1) })
	if spread[http.StatusUnauthorized]+spread[http.StatusServiceUnavailable] != 20 {
		t.Errorf("20 wrong passwords from 20 addresses: %v; want each refused (401, or 503 when too many hash at once)", spread)
	}
	peak := vmHWM(t, pid)
	t.Logf("peak RSS %d MiB before, %d MiB after 40 concurrent sign-ins", before>>20, peak>>20)
	if grew := peak - before; grew > 200<<20 {
		t.Errorf("peak RSS grew by %d MiB during the bursts, want < 200 MiB (password hashes are bounded)", grew>>20)
	}
	// Nobody locked the admin out from elsewhere.
	admin, code := uiSignIn(t, base, "127.0.0.9", "admin", password)
	if code != http.StatusSeeOther {
		t.Fatalf("the admin from another address after the bursts: %d, want a sign-in", code)
	}
	other, code := uiSignIn(t, base, "127.0.0.10", "admin", password)
	if code != http.StatusSeeOther {
		t.Fatalf("a second admin session: %d", code)
	}
	const next = "a new passphrase for the admin"
	resp, err := admin.c.PostForm(base+"/account/password", url.Values{"csrf": {admin.csrf}, "current": {password}, "new": {next}, "confirm": {next}})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("password change: %v %v", err, resp)
	}
	resp.Body.Close()
	if _, code := other.get(t, "/devices"); code != http.StatusSeeOther {
		t.Errorf("the other session after the password change: %d, want a redirect to sign in", code)
	}
	if _, code := admin.get(t, "/devices"); code != http.StatusOK {
		t.Errorf("the session that changed the password: %d, want 200", code)
	}

	// The anchored-pattern escape, through the API and the CLI.
	token := mustRun(t, "", "user", "token", "--data-dir", data, "--name", "admin").lastLine()
	const escape = `sensor-[0-9]+)|(.*`
	body, _ := json.Marshal(map[string]string{"name": "escape", "device_pattern": escape})
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/credentials", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err = insecureClient("", nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("API credential with an escaping pattern: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	if r := runCLI(t, "", "credential", "create", "--data-dir", data, "--name", "escape2", "--device-pattern", escape); r.code == 0 ||
		!strings.Contains(r.stderr, "not a valid regular expression") {
		t.Errorf("CLI credential with an escaping pattern: exit %d %s", r.code, r.stderr)
	}
}

// TestDescriptorExhaustion: serve with a low descriptor limit is flooded
// with idle connections (from many loopback addresses, past the per-address
// bound) until accepting fails; once the flood goes away, new devices
// connect again without a restart, the accept errors are counted, and
// readiness is 200.
func TestDescriptorExhaustion(t *testing.T) {
	e := newEnrollEnvLimited(t, 160)
	dir := t.TempDir()
	dev := filepath.Join(dir, "dev-1")
	if r := e.enroll(t, "--device-id", "dev-1", "--out", dev); r.code != 0 {
		t.Fatalf("enroll: %s", r.stderr)
	}
	mqtt := mqttAddrOf(t, e.srv)
	var conns []net.Conn
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; !strings.Contains(e.srv.log.String(), "accepting a connection failed"); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no accept error after %d connections:\n%s", len(conns), e.srv.log.String())
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, byte(1+i/50))}, Timeout: time.Second}
		c, err := d.Dial("tcp", mqtt)
		if err == nil {
			conns = append(conns, c)
		}
		if i > 2000 {
			t.Fatalf("2000 connections and no accept error")
		}
	}
	t.Logf("accepting failed after %d idle connections", len(conns))
	for _, c := range conns {
		c.Close()
	}
	host, port, _ := net.SplitHostPort(mqtt)
	var out []byte
	var err error
	for range 50 { // the listener retries after at most a second
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err = exec.CommandContext(ctx, "mosquitto_pub", "-h", host, "-p", port, "--cafile", filepath.Join(dev, "root.pem"),
			"--cert", filepath.Join(dev, "device.crt"), "--key", filepath.Join(dev, "device.key"), "-i", "dev-1",
			"-t", "devices/dev-1/up", "-m", "back", "-q", "1").CombinedOutput()
		cancel()
		if err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("a device cannot connect after the flood: %v %s", err, out)
	}
	metrics := get(t, e.srv.url("/metrics"), 200, "", "")
	m := regexp.MustCompile(`fleetpki_listener_accept_errors_total\{listener="mqtt"\} (\d+)`).FindStringSubmatch(metrics)
	if m == nil || m[1] == "0" {
		t.Errorf("accept errors of the MQTT listener not counted: %v", m)
	}
	get(t, e.srv.url("/readyz"), 200, "", "ready")
}

// newEnrollEnvLimited is newEnrollEnv with serve under `ulimit -n limit`.
func newEnrollEnvLimited(t *testing.T, limit int) *enrollEnv {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	srv := startServeWrapped(t, []string{"/bin/sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, limit)},
		"--data-dir", data, "--http-addr", "127.0.0.1:0", "--enroll-rate", "0")
	secret := mustRun(t, "", "credential", "create", "--data-dir", data, "--name", "station", "--device-pattern", `dev-[0-9]+`).lastLine()
	return &enrollEnv{srv: srv, data: data, secret: secret,
		args: []string{"--server", "https://" + srv.httpsAddr, "--fingerprint", srv.fingerprint}}
}

var mqttListenRE = regexp.MustCompile(`msg=listening listener=mqtt addr=(\S+)`)

func mqttAddrOf(t *testing.T, s *server) string {
	t.Helper()
	m := mqttListenRE.FindStringSubmatch(s.log.String())
	if m == nil {
		t.Fatalf("serve logged no MQTT address:\n%s", s.log.String())
	}
	return m[1]
}

// TestOCSPNonceAfterRestart: openssl ocsp sends a nonce by default; its
// answer must verify for a certificate issued before serve restarted (its
// stored response was signed by the previous process's responder).
func TestOCSPNonceAfterRestart(t *testing.T) {
	e := newEnrollEnv(t)
	dev := filepath.Join(t.TempDir(), "dev-1")
	if r := e.enroll(t, "--device-id", "dev-1", "--out", dev); r.code != 0 {
		t.Fatalf("enroll: %s", r.stderr)
	}
	chain, _ := os.ReadFile(filepath.Join(dev, "chain.pem"))
	issuer := filepath.Join(dev, "issuer.pem")
	_ = os.WriteFile(issuer, chain[:bytes.Index(chain, []byte("-----END CERTIFICATE-----"))+len("-----END CERTIFICATE-----\n")], 0o644)
	query := func(s *server) string {
		out, _ := exec.Command("openssl", "ocsp", "-issuer", issuer, "-cert", filepath.Join(dev, "device.crt"), "-url", s.url("/ocsp"),
			"-CAfile", filepath.Join(dev, "root.pem")).CombinedOutput()
		return string(out)
	}
	if out := query(e.srv); !strings.Contains(out, "Response verify OK") || !strings.Contains(out, ": good") || strings.Contains(out, "WARNING") {
		t.Fatalf("OCSP with a nonce before the restart:\n%s", out)
	}
	// Past the presigner's sweep-soon window is not needed: the SHA-1
	// answer was stored at issuance by the first process.
	e.srv.stop(t)
	again := startServe(t, "--data-dir", e.data, "--http-addr", "127.0.0.1:0")
	if out := query(again); !strings.Contains(out, "Response verify OK") || !strings.Contains(out, ": good") || strings.Contains(out, "WARNING") {
		t.Fatalf("OCSP with a nonce after the restart:\n%s", out)
	}
}
