package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium, which scripts/test.sh installs.
const chromiumPath = "/usr/bin/chromium"

// browser starts a headless Chromium for the test; without one the test
// skips, except in CI, where it fails.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Chromium is required in CI (apt-get install chromium): %v", err)
		}
		t.Skipf("no Chromium at %s; the browser tests need it (apt-get install chromium)", chromiumPath)
	}
	alloc, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		// serve's HTTPS certificate comes from its own, just-made CA.
		chromedp.Flag("ignore-certificate-errors", true))
	t.Cleanup(cancel)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(cancelCtx)
	// Start the browser on this context: cancelling the first context an
	// action runs on closes the browser, and steps run under timeouts.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// stepTimeout bounds each browser step, so a missing element fails fast.
const stepTimeout = 20 * time.Second

// artifactsDir is where failing browser tests leave screenshots.
func artifactsDir() string {
	if d := os.Getenv("FLEETPKI_ARTIFACTS"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "artifacts")
}

// ui drives one browser through serve's admin UI.
type ui struct {
	t    *testing.T
	ctx  context.Context
	base string
}

// screenshotOnFailure saves the page as it was when the test failed.
func (u *ui) screenshotOnFailure(name string) {
	u.t.Cleanup(func() {
		if !u.t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			u.t.Logf("no failure screenshot: %v", err)
			return
		}
		dir := artifactsDir()
		_ = os.MkdirAll(dir, 0o755)
		p := filepath.Join(dir, name+".png")
		if err := os.WriteFile(p, png, 0o644); err == nil {
			u.t.Logf("failure screenshot: %s", p)
		}
	})
}

func (u *ui) do(steps ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		u.t.Fatalf("browser: %v", err)
	}
}

// nav runs steps that end in a navigation (a submit, a click on a link)
// and waits until the new page has loaded; it returns the HTTP status.
func (u *ui) nav(steps ...chromedp.Action[chromedp.Void]) int64 {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		u.t.Fatalf("browser: %v", err)
	}
	return resp.Status
}

func (u *ui) text(sel string) string {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		u.t.Fatalf("browser: text of %s: %v", sel, err)
	}
	return s
}

func (u *ui) login(user, password string) {
	u.t.Helper()
	u.do(chromedp.Navigate(u.base+"/login"), chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), user), chromedp.SendKeys(chromedp.CSS("#password"), password))
	u.nav(chromedp.Submit(chromedp.CSS("#password")))
}

func (u *ui) logout() {
	u.t.Helper()
	u.do(chromedp.Navigate(u.base+"/"), chromedp.WaitVisible(chromedp.CSS(".who button")))
	u.nav(chromedp.Click(chromedp.CSS(".who button")))
}

// present reports whether sel matches anything on the current page.
func (u *ui) present(sel string) bool {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int]("document.querySelectorAll("+strconv.Quote(sel)+").length"))
	if err != nil {
		u.t.Fatalf("browser: %v", err)
	}
	return n > 0
}

// TestAdminUIInBrowser: an operator finds a device enrolled through the API
// and revokes it (keyCompromise), and the real OCSP endpoint says revoked;
// an auditor sees no revoke controls and a forged revoke from an auditor
// session is refused; a cross-origin POST changes nothing; repeated wrong
// passwords are throttled; a bulk revoke of a lot hits exactly the previewed
// devices.
func TestAdminUIInBrowser(t *testing.T) {
	ctx := browser(t)
	e := newEnrollEnv(t)
	enroll := func(id, lot string) string {
		out := filepath.Join(t.TempDir(), id)
		if r := e.enroll(t, "--device-id", id, "--out", out, "--metadata", "lot="+lot); r.code != 0 {
			t.Fatalf("enroll %s: %s", id, r.stderr)
		}
		return out
	}
	leakDir := enroll("dev-9", "2026-W40")
	for _, id := range []string{"dev-11", "dev-12", "dev-13"} {
		enroll(id, "2026-W41")
	}
	for _, id := range []string{"dev-21", "dev-22"} {
		enroll(id, "2026-W42")
	}
	adminPW, err := os.ReadFile(filepath.Join(e.data, "admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, "correct horse battery staple\n", "user", "create", "--data-dir", e.data, "--name", "olivia", "--role", "operator", "--password-stdin")
	mustRun(t, "correct horse battery staple\n", "user", "create", "--data-dir", e.data, "--name", "audrey", "--role", "auditor", "--password-stdin")
	u := &ui{t: t, ctx: ctx, base: "https://" + e.srv.httpsAddr}
	u.screenshotOnFailure(t.Name())

	// Sign-in is required, then the operator finds the leaked device.
	u.do(chromedp.Navigate(u.base + "/devices"))
	if !u.present("#username") {
		t.Fatal("the device list was shown without signing in")
	}
	u.login("olivia", "correct horse battery staple")
	u.do(chromedp.Navigate(u.base+"/devices"), chromedp.WaitVisible(chromedp.CSS("#q")), chromedp.SendKeys(chromedp.CSS("#q"), "dev-9"))
	u.nav(chromedp.Submit(chromedp.CSS("#q")))
	u.nav(chromedp.Click(chromedp.CSS(`a[href="/devices/dev-9"]`)))
	u.nav(chromedp.Click(chromedp.CSS("#revoke-device")))
	// A wrong confirmation revokes nothing.
	u.do(chromedp.SetValue(chromedp.CSS("#reason"), "keyCompromise"), chromedp.SendKeys(chromedp.CSS("#confirm"), "dev-8"))
	if st := u.nav(chromedp.Submit(chromedp.CSS("#confirm"))); st != 400 || !strings.Contains(u.text("#error"), "nothing was revoked") {
		t.Fatalf("wrong confirmation: HTTP %d", st)
	}
	u.do(chromedp.Navigate(u.base+"/devices/dev-9/revoke"), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.SetValue(chromedp.CSS("#reason"), "keyCompromise"), chromedp.SendKeys(chromedp.CSS("#confirm"), "dev-9"))
	u.nav(chromedp.Submit(chromedp.CSS("#confirm")))
	if r := u.text("#result"); !strings.Contains(r, "1 certificate(s) revoked") || !strings.Contains(r, "keyCompromise") {
		t.Fatalf("revoke result: %q", r)
	}
	// The real OCSP endpoint answers revoked (openssl as the client), and the
	// certificate page shows what it answers.
	chain, _ := os.ReadFile(filepath.Join(leakDir, "chain.pem"))
	_ = os.WriteFile(filepath.Join(leakDir, "issuer.pem"), chain[:strings.Index(string(chain), "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----\n")], 0o600)
	o, err := exec.Command("openssl", "ocsp", "-issuer", filepath.Join(leakDir, "issuer.pem"), "-cert", filepath.Join(leakDir, "device.crt"),
		"-url", e.srv.url("/ocsp"), "-CAfile", filepath.Join(leakDir, "root.pem"), "-no_nonce").CombinedOutput()
	if err != nil || !strings.Contains(string(o), "device.crt: revoked") || !strings.Contains(string(o), "Reason: keyCompromise") {
		t.Fatalf("OCSP after the UI revocation: %v\n%s", err, o)
	}
	serial := certSerial(t, mustRead(t, filepath.Join(leakDir, "device.crt")))
	u.do(chromedp.Navigate(u.base+"/certificates/"+serial), chromedp.WaitVisible(chromedp.CSS("#ocsp-status")))
	if s := u.text("#ocsp-status"); !strings.Contains(s, "revoked") || !strings.Contains(s, "keyCompromise") {
		t.Fatalf("certificate page OCSP status: %q", s)
	}

	// Bulk revoke of lot 2026-W41: the preview names 3 devices; exactly those go.
	u.do(chromedp.Navigate(u.base+"/bulk-revoke"), chromedp.WaitVisible(chromedp.CSS("#meta")),
		chromedp.SendKeys(chromedp.CSS("#meta"), "lot=2026-W41"))
	u.nav(chromedp.Submit(chromedp.CSS("#meta")))
	if p := u.text("#preview"); !strings.Contains(p, "3 active device(s), 3 valid certificate(s)") {
		t.Fatalf("bulk preview: %q", p)
	}
	u.do(chromedp.SetValue(chromedp.CSS("#reason"), "keyCompromise"), chromedp.SendKeys(chromedp.CSS("#confirm"), "3"))
	u.nav(chromedp.Submit(chromedp.CSS("#confirm")))
	if r := u.text("#result"); !strings.Contains(r, "3 certificate(s) revoked") {
		t.Fatalf("bulk result: %q", r)
	}
	token := mustRun(t, "", "user", "token", "--data-dir", e.data, "--name", "admin").lastLine()
	for id, want := range map[string]string{"dev-11": "revoked", "dev-12": "revoked", "dev-13": "revoked", "dev-21": "active", "dev-22": "active"} {
		if got := deviceStatus(t, e, token, id); got != want {
			t.Errorf("after the bulk revoke, %s is %s, want %s", id, got, want)
		}
	}

	// A cross-origin form POST (from the plain-HTTP listener's origin) changes nothing.
	u.do(chromedp.Navigate(e.srv.url("/healthz")))
	ectx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Run(ectx, chromedp.Evaluate[any](`fetch(`+strconv.Quote(u.base+"/devices/dev-21/revoke")+`, {method: "POST", mode: "no-cors", credentials: "include",
		headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "reason=keyCompromise&confirm=dev-21"}).then(() => 1, () => 0)`,
		chromedp.EvalAwaitPromise)); err != nil {
		t.Fatal(err)
	}
	if got := deviceStatus(t, e, token, "dev-21"); got != "active" {
		t.Fatalf("a cross-origin POST revoked dev-21 (%s)", got)
	}
	u.logout()

	// An auditor sees no revoke controls, and a forged revoke POST from an
	// auditor session (with its valid CSRF token) is refused.
	u.login("audrey", "correct horse battery staple")
	u.do(chromedp.Navigate(u.base+"/devices/dev-21"), chromedp.WaitVisible(chromedp.CSS("h1")))
	if u.present("#revoke-device") || u.present(`a[href="/bulk-revoke"]`) {
		t.Fatal("an auditor is shown revoke controls")
	}
	// The page's CSP allows no fetch, so the forgery is a form built in the
	// page and submitted, as an injected script would do.
	forge := chromedp.Action[chromedp.Void](func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[any](`(() => { const f = document.createElement("form"); f.method = "post"; f.action = "/devices/dev-21/revoke";
			for (const [k, v] of [["csrf", document.querySelector("input[name=csrf]").value], ["reason", "keyCompromise"], ["confirm", "dev-21"]]) {
				const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i); }
			document.body.appendChild(f); f.submit(); return 1; })()`)(ctx, tg)
		return chromedp.Void{}, err
	})
	if status := u.nav(forge); status != 403 {
		t.Fatalf("forged revoke from an auditor session: HTTP %d, want 403", status)
	}
	if got := deviceStatus(t, e, token, "dev-21"); got != "active" {
		t.Fatalf("the auditor's forged POST revoked dev-21")
	}
	u.logout()

	// Repeated wrong passwords are throttled, even for the right one then.
	for range 5 {
		u.login("admin", "not the password")
	}
	u.login("admin", strings.TrimSpace(string(adminPW)))
	if a := u.text("p.alert"); !strings.Contains(a, "Too many failed sign-ins") {
		t.Fatalf("after 5 wrong passwords: %q", a)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deviceStatus asks the REST API (with curl) for a device's status.
func deviceStatus(t *testing.T, e *enrollEnv, token, id string) string {
	t.Helper()
	out, err := exec.Command("curl", "-sS", "-k", "-H", "Authorization: Bearer "+token, "https://"+e.srv.httpsAddr+"/api/v1/devices/"+id).Output()
	if err != nil {
		t.Fatal(err)
	}
	var d struct{ Status string }
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("device %s: %s", id, out)
	}
	return d.Status
}

var errNoScreenshots = errors.New("FLEETPKI_SCREENSHOTS is not set")

// TestScreenshots writes screenshots of the main pages at desktop and phone
// sizes into $FLEETPKI_SCREENSHOTS (`make screenshots`); otherwise it skips.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("FLEETPKI_SCREENSHOTS")
	if dir == "" {
		t.Skip(errNoScreenshots)
	}
	ctx := browser(t)
	e := newEnrollEnv(t)
	for i, lot := range []string{"2026-W40", "2026-W41", "2026-W41", "2026-W41", "2026-W42"} {
		id := "dev-" + strconv.Itoa(i+1)
		if r := e.enroll(t, "--device-id", id, "--out", filepath.Join(t.TempDir(), id), "--metadata", "lot="+lot, "--metadata", "line=7"); r.code != 0 {
			t.Fatalf("enroll: %s", r.stderr)
		}
	}
	adminPW := strings.TrimSpace(string(mustRead(t, filepath.Join(e.data, "admin-password"))))
	u := &ui{t: t, ctx: ctx, base: "https://" + e.srv.httpsAddr}
	u.login("admin", adminPW)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pages := []struct{ name, path, wait string }{
		{"dashboard", "/", "#active-devices"},
		{"devices", "/devices", "#q"},
		{"device", "/devices/dev-1", "#revoke-device"},
		{"revoke", "/devices/dev-1/revoke", "#confirm"},
		{"bulk-preview", "/bulk-revoke?meta=lot%3D2026-W41", "#preview"},
	}
	for _, size := range []struct {
		name string
		w, h int64
	}{{"1280x800", 1280, 800}, {"390x844", 390, 844}} {
		for _, p := range pages {
			u.do(chromedp.EmulateViewport(size.w, size.h), chromedp.Navigate(u.base+p.path), chromedp.WaitVisible(chromedp.CSS(p.wait)))
			sctx, cancel := context.WithTimeout(ctx, stepTimeout)
			png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, p.name+"-"+size.name+".png")
			if err := os.WriteFile(f, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s", f)
		}
	}
}

// TestServicesInBrowser: service certificates are listed apart from
// devices; an admin sees the service credential's name pattern, opens the
// broker's service and revokes it; OCSP then says its certificate is
// revoked.
func TestServicesInBrowser(t *testing.T) {
	ctx := browser(t)
	e := newServiceEnv(t, "30d")
	svc := strings.TrimSpace(string(mustRead(t, e.serviceCredFile)))
	out := filepath.Join(t.TempDir(), "broker")
	if r := runCLI(t, "", append(append([]string{"enroll", "--credential", svc}, e.args...), "--profile", "broker", "--dns", "localhost",
		"--ip", "127.0.0.1", "--out", out)...); r.code != 0 {
		t.Fatalf("enroll the broker: %s", r.stderr)
	}
	if r := e.enroll(t, "--device-id", "dev-1", "--out", t.TempDir()); r.code != 0 {
		t.Fatalf("enroll dev-1: %s", r.stderr)
	}
	adminPW := strings.TrimSpace(string(mustRead(t, filepath.Join(e.data, "admin-password"))))
	u := &ui{t: t, ctx: ctx, base: "https://" + e.srv.httpsAddr}
	u.screenshotOnFailure(t.Name())
	u.login("admin", adminPW)

	u.do(chromedp.Navigate(u.base+"/services"), chromedp.WaitVisible(chromedp.CSS("h1")))
	if !u.present(`a[href="/devices/localhost"]`) || u.present(`a[href="/devices/dev-1"]`) {
		t.Fatal("/services does not list exactly the broker")
	}
	u.do(chromedp.Navigate(u.base+"/devices"), chromedp.WaitVisible(chromedp.CSS("h1")))
	if u.present(`a[href="/devices/localhost"]`) || !u.present(`a[href="/devices/dev-1"]`) {
		t.Fatal("/devices does not list exactly the device")
	}
	u.do(chromedp.Navigate(u.base+"/credentials"), chromedp.WaitVisible(chromedp.CSS("h1")))
	if body := u.text("table"); !strings.Contains(body, `localhost|127\.0\.0\.1`) || !strings.Contains(body, "server, broker") {
		t.Fatalf("the credentials page does not show the service credential's profiles and name pattern:\n%s", body)
	}

	u.do(chromedp.Navigate(u.base+"/services"), chromedp.WaitVisible(chromedp.CSS("h1")))
	u.nav(chromedp.Click(chromedp.CSS(`a[href="/devices/localhost"]`)))
	if h := u.text("h1"); !strings.HasPrefix(h, "Service") {
		t.Fatalf("service page heading %q", h)
	}
	u.nav(chromedp.Click(chromedp.CSS("#revoke-device")))
	u.do(chromedp.SetValue(chromedp.CSS("#reason"), "keyCompromise"), chromedp.SendKeys(chromedp.CSS("#confirm"), "localhost"))
	u.nav(chromedp.Submit(chromedp.CSS("#confirm")))
	if r := u.text("#result"); !strings.Contains(r, "1 certificate(s) revoked") {
		t.Fatalf("revoke result: %q", r)
	}
	chain := string(mustRead(t, filepath.Join(out, "chain.pem")))
	_ = os.WriteFile(filepath.Join(out, "issuer.pem"), []byte(chain[:strings.Index(chain, "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----\n")]), 0o600)
	o, err := exec.Command("openssl", "ocsp", "-issuer", filepath.Join(out, "issuer.pem"), "-cert", filepath.Join(out, "server.crt"),
		"-url", e.srv.url("/ocsp"), "-CAfile", filepath.Join(out, "root.pem"), "-no_nonce").CombinedOutput()
	if err != nil || !strings.Contains(string(o), "server.crt: revoked") {
		t.Fatalf("OCSP for the revoked broker certificate: %v\n%s", err, o)
	}
}
