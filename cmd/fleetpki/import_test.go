package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInitImportsAnOpenSSLHierarchy: an operator's existing root and
// issuing CA, made with openssl, are imported by `fleetpki init`; serve then
// runs on them (the logged root fingerprint is openssl's) and issues.
func TestInitImportsAnOpenSSLHierarchy(t *testing.T) {
	dir := t.TempDir()
	f := func(n string) string { return filepath.Join(dir, n) }
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	_ = os.WriteFile(f("ext.cnf"), []byte(`[inter]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`), 0o600)
	run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("root.key"), "-out", f("root.pem"),
		"-subj", "/O=Acme/CN=Acme Root", "-days", "3650",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("inter.key"), "-out", f("inter.csr"),
		"-subj", "/O=Acme/CN=Acme Devices CA")
	run("x509", "-req", "-in", f("inter.csr"), "-CA", f("root.pem"), "-CAkey", f("root.key"), "-CAcreateserial", "-out", f("inter.pem"),
		"-days", "1825", "-extfile", f("ext.cnf"), "-extensions", "inter")
	inter, _ := os.ReadFile(f("inter.pem"))
	root, _ := os.ReadFile(f("root.pem"))
	_ = os.WriteFile(f("chain.pem"), append(inter, root...), 0o600)

	data := f("data")
	r := mustRun(t, "", "init", "--data-dir", data, "--import-chain", f("chain.pem"), "--import-key", f("inter.key"))
	out, _ := exec.Command("openssl", "x509", "-in", f("root.pem"), "-noout", "-fingerprint", "-sha256").Output()
	want := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(string(out[strings.Index(string(out), "=")+1:])), ":", ""))
	if r.lastLine() != want {
		t.Fatalf("init printed %q, openssl says the root is %q", r.lastLine(), want)
	}
	// A second import into the same data directory is refused.
	if again := runCLI(t, "", "init", "--data-dir", data, "--import-chain", f("chain.pem"), "--import-key", f("inter.key")); again.code == 0 {
		t.Fatal("a second init over an existing CA succeeded")
	}
	mustRun(t, "", "migrate", "--data-dir", data)
	if pw := mustRun(t, "", "user", "create", "--data-dir", data, "--name", "bob", "--role", "operator").lastLine(); len(pw) < 12 {
		t.Fatalf("user create printed %q as the password", pw)
	}
	srv := startServe(t, "--data-dir", data, "--http-addr", "127.0.0.1:0")
	if srv.fingerprint != want {
		t.Fatalf("serve logged root %s, want the imported %s", srv.fingerprint, want)
	}
	secret := mustRun(t, "", "credential", "create", "--data-dir", data, "--name", "line").lastLine()
	certDir := t.TempDir()
	enrollDevice(t, srv, []byte(get(t, srv.url("/ca/root.crt"), 200, "", "")), secret, "dev-1", certDir)
	v, err := exec.Command("openssl", "verify", "-CAfile", f("root.pem"), "-untrusted", f("inter.pem"), filepath.Join(certDir, "device.crt")).CombinedOutput()
	if err != nil || !strings.Contains(string(v), ": OK") {
		t.Fatalf("a certificate issued under the imported CA: %v %s", err, v)
	}
	srv.stop(t)
}
