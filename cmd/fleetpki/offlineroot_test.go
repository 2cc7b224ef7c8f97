package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/internal/testenv"
	"github.com/fleetpki/fleetpki/rootsign"
)

// An offline root, end to end: init leaves no root key with serve; the
// bundle `root sign` makes on the offline machine is published: openssl
// checks the whole chain against both CRLs (-crl_check_all) and asks OCSP
// about the issuing CA (issuer: the root), answered good with a verified
// signature; a bundle near its end is warned about in the log, the
// metrics and the UI; an expired one is not served at all.
func TestOfflineRootEndToEnd(t *testing.T) {
	needTool(t, "openssl", "curl")
	dir := t.TempDir()
	data, usb := filepath.Join(dir, "data"), filepath.Join(dir, "usb")
	mustRun(t, "", "init", "--data-dir", data, "--offline-root", usb)
	if found := testenv.FindPrivateKeys(t, data); len(found) != 1 || filepath.Base(found[0]) != "intermediate.key" {
		t.Fatalf("private keys with serve: %v, want the issuing key only", found)
	}
	bundle := filepath.Join(data, "root-signed.pem")
	mustRun(t, "", "root", "sign", "--root-dir", usb, "--out", bundle, "--valid", "30d")

	srv := startServe(t, "--data-dir", data, "--http-addr", "127.0.0.1:0", "--enroll-rate", "0")
	secret := mustRun(t, "", "credential", "create", "--data-dir", data, "--name", "line").lastLine()
	e := &enrollEnv{srv: srv, data: data, secret: secret, args: []string{"--server", "https://" + srv.httpsAddr, "--fingerprint", srv.fingerprint}}
	dev := filepath.Join(dir, "dev-1")
	if r := e.enroll(t, "--device-id", "dev-1", "--out", dev); r.code != 0 {
		t.Fatalf("enroll: %s", r.stderr)
	}
	chain := string(mustRead(t, filepath.Join(dev, "chain.pem")))
	inter := filepath.Join(dir, "inter.pem")
	_ = os.WriteFile(inter, []byte(chain[:strings.Index(chain, "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----\n")]), 0o600)
	root := filepath.Join(dev, "root.pem")
	fetchCRL := func(path, out string) {
		t.Helper()
		if o, err := exec.Command("curl", "-sSf", "-o", out+".der", srv.url(path)).CombinedOutput(); err != nil {
			t.Fatalf("GET %s: %v %s", path, err, o)
		}
		if o, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", out+".der", "-out", out).CombinedOutput(); err != nil {
			t.Fatalf("openssl crl %s: %v %s", path, err, o)
		}
	}
	rootCRL, issuingCRL := filepath.Join(dir, "root.crl.pem"), filepath.Join(dir, "issuing.crl.pem")
	fetchCRL("/crl/root", rootCRL)
	fetchCRL("/crl", issuingCRL)
	if o, err := exec.Command("openssl", "verify", "-crl_check_all", "-CAfile", root, "-untrusted", inter, "-CRLfile", rootCRL,
		"-CRLfile", issuingCRL, filepath.Join(dev, "device.crt")).CombinedOutput(); err != nil || !strings.Contains(string(o), ": OK") {
		t.Fatalf("openssl verify -crl_check_all: %v\n%s", err, o)
	}
	o, err := exec.Command("openssl", "ocsp", "-issuer", root, "-cert", inter, "-url", srv.url("/ocsp"), "-CAfile", root, "-no_nonce").CombinedOutput()
	if err != nil || !strings.Contains(string(o), "Response verify OK") || !strings.Contains(string(o), inter+": good") {
		t.Fatalf("openssl ocsp about the issuing CA: %v\n%s", err, o)
	}
	if m := get(t, srv.url("/metrics"), 200, "", "fleetpki_root_signed_expiry_timestamp_seconds"); strings.Contains(m, "fleetpki_root_signed_expiry_timestamp_seconds 0\n") {
		t.Fatal("the expiry metric is 0 with a bundle published")
	}
	srv.stop(t)

	// A bundle near its end: warned about in the log and the UI.
	o2, err := ca.LoadOfflineRoot(context.Background(), usb, nil)
	if err != nil {
		t.Fatal(err)
	}
	signAt := func(at time.Time, valid time.Duration) {
		t.Helper()
		b, err := rootsign.Sign(rootsign.SignOptions{Root: o2.Root, Signer: o2.Signer, Issuing: o2.Issuing, Validity: valid, Now: at})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bundle, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	signAt(time.Now().Add(-25*24*time.Hour), 30*24*time.Hour) // 5 days left: warned
	srv = startServe(t, "--data-dir", data, "--http-addr", "127.0.0.1:0")
	if !strings.Contains(srv.log.String(), "run 'fleetpki root sign'") {
		t.Fatalf("serve does not warn about the bundle's end:\n%s", srv.log.String())
	}
	pw := strings.TrimSpace(string(mustRead(t, filepath.Join(data, "admin-password"))))
	s, code := uiSignIn(t, "https://"+srv.httpsAddr, srv.httpsAddr, "admin", pw)
	if code != 303 {
		t.Fatalf("sign-in: %d", code)
	}
	if page, _ := s.get(t, "/"); !strings.Contains(page, "run &#39;fleetpki root sign&#39;") {
		t.Fatalf("the dashboard does not warn about the bundle's end:\n%s", page)
	}
	srv.stop(t)

	// An expired bundle is not served: no root CRL, tryLater for the
	// issuing CA.
	signAt(time.Now().Add(-3*time.Hour), time.Hour)
	srv = startServe(t, "--data-dir", data, "--http-addr", "127.0.0.1:0")
	get(t, srv.url("/crl/root"), 503, "", "")
	o, _ = exec.Command("openssl", "ocsp", "-issuer", root, "-cert", inter, "-url", srv.url("/ocsp"), "-CAfile", root, "-no_nonce").CombinedOutput()
	if !strings.Contains(strings.ToLower(string(o)), "trylater") {
		t.Fatalf("openssl ocsp about the issuing CA with an expired bundle:\n%s", o)
	}
}

// With the root key at hand (the default), serve signs the root's answers
// about the issuing CA itself: a chain-checking relying party gets "good"
// from the same /ocsp, with the caching headers of every answer.
func TestOCSPForIssuingCA(t *testing.T) {
	needTool(t, "openssl", "curl")
	e := newEnrollEnv(t)
	dir := t.TempDir()
	if r := e.enroll(t, "--device-id", "dev-1", "--out", dir); r.code != 0 {
		t.Fatalf("enroll: %s", r.stderr)
	}
	chain := string(mustRead(t, filepath.Join(dir, "chain.pem")))
	inter := filepath.Join(dir, "inter.pem")
	_ = os.WriteFile(inter, []byte(chain[:strings.Index(chain, "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----\n")]), 0o600)
	root := filepath.Join(dir, "root.pem")
	reqFile := filepath.Join(dir, "req.der")
	o, err := exec.Command("openssl", "ocsp", "-issuer", root, "-cert", inter, "-url", e.srv.url("/ocsp"), "-CAfile", root, "-no_nonce",
		"-reqout", reqFile).CombinedOutput()
	if err != nil || !strings.Contains(string(o), "Response verify OK") || !strings.Contains(string(o), inter+": good") {
		t.Fatalf("openssl ocsp about the issuing CA: %v\n%s", err, o)
	}
	hdr, err := exec.Command("curl", "-sS", "-D", "-", "-o", "/dev/null", "-H", "Content-Type: application/ocsp-request",
		"--data-binary", "@"+reqFile, e.srv.url("/ocsp")).Output()
	if err != nil || !strings.Contains(string(hdr), "Cache-Control: max-age=") || !strings.Contains(string(hdr), "Etag: ") {
		t.Fatalf("caching headers of the root's answer: %v\n%s", err, hdr)
	}
}
