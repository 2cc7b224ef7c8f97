package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// enrollEnv is a running serve with a credential, for the station client's tests.
type enrollEnv struct {
	srv    *server
	data   string
	secret string
	args   []string // --server and --fingerprint
}

func newEnrollEnv(t *testing.T, extra ...string) *enrollEnv {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	srv := startServe(t, append([]string{"--data-dir", data, "--http-addr", "127.0.0.1:0", "--enroll-rate", "0"}, extra...)...)
	secret := mustRun(t, "", "credential", "create", "--data-dir", data, "--name", "station", "--device-pattern", `dev-[0-9]+`).lastLine()
	return &enrollEnv{srv: srv, data: data, secret: secret,
		args: []string{"--server", "https://" + srv.httpsAddr, "--fingerprint", srv.fingerprint}}
}

func (e *enrollEnv) enroll(t *testing.T, args ...string) result {
	t.Helper()
	return runCLI(t, "", append(append([]string{"enroll", "--credential", e.secret}, e.args...), args...)...)
}

func TestEnrollCommand(t *testing.T) {
	e := newEnrollEnv(t)
	out := filepath.Join(t.TempDir(), "dev-1")
	r := e.enroll(t, "--device-id", "dev-1", "--out", out, "--metadata", "lot=2026-W41")
	if r.code != 0 {
		t.Fatalf("enroll: %d\n%s", r.code, r.stderr)
	}
	for name, mode := range map[string]os.FileMode{"device.key": 0o600, "device.crt": 0o644, "chain.pem": 0o644, "root.pem": 0o644} {
		fi, err := os.Stat(filepath.Join(out, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v, mode %v want %v", name, err, fi, mode)
		}
	}
	v, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(out, "root.pem"), "-untrusted", filepath.Join(out, "chain.pem"),
		filepath.Join(out, "device.crt")).CombinedOutput()
	if err != nil || !strings.Contains(string(v), ": OK") {
		t.Fatalf("openssl verify: %v %s", err, v)
	}
	a, _ := exec.Command("openssl", "pkey", "-in", filepath.Join(out, "device.key"), "-pubout").Output()
	b, _ := exec.Command("openssl", "x509", "-in", filepath.Join(out, "device.crt"), "-noout", "-pubkey").Output()
	if len(a) == 0 || string(a) != string(b) {
		t.Fatal("the certificate does not hold the key written to device.key")
	}

	// A CSR made elsewhere (openssl here): no key is written.
	dir := t.TempDir()
	exec.Command("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes",
		"-keyout", filepath.Join(dir, "se.key"), "-out", filepath.Join(dir, "se.csr"), "-subj", "/CN=x").Run()
	out2 := filepath.Join(dir, "out")
	if r := e.enroll(t, "--device-id", "dev-2", "--csr", filepath.Join(dir, "se.csr"), "--out", out2); r.code != 0 {
		t.Fatalf("enroll --csr: %s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(out2, "device.key")); !os.IsNotExist(err) {
		t.Fatal("--csr wrote a key")
	}

	// A wrong fingerprint: refused before anything is sent.
	wrong := strings.Repeat("ab", 32)
	r = runCLI(t, "", "enroll", "--credential", e.secret, "--server", "https://"+e.srv.httpsAddr, "--fingerprint", wrong,
		"--device-id", "dev-3", "--out", t.TempDir())
	if r.code == 0 || !strings.Contains(r.stderr, "untrusted server") {
		t.Fatalf("wrong fingerprint: %d %s", r.code, r.stderr)
	}
	if n := countRows(t, e.data, "SELECT count(*) FROM certificates WHERE device_id = 'dev-3'"); n != 0 {
		t.Fatal("a device was enrolled through an unverified server")
	}
	// A problem from the server reaches the user with its code.
	r = e.enroll(t, "--device-id", "camera-1", "--out", t.TempDir())
	if r.code == 0 || !strings.Contains(r.stderr, "forbidden") {
		t.Fatalf("id outside the pattern: %d %s", r.code, r.stderr)
	}
}

// countRows runs a count query on serve's SQLite database.
func countRows(t *testing.T, data, query string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "fleetpki.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestEnrollBatchResumes is the station's worst day: a batch of 200 is
// killed half way and re-run; the server ends with 200 devices and 200
// certificates — none issued twice.
func TestEnrollBatchResumes(t *testing.T) {
	e := newEnrollEnv(t)
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("device_id,lot\n")
	for i := range 200 {
		fmt.Fprintf(&csv, "dev-%03d,2026-W41\n", i)
	}
	batch := filepath.Join(dir, "batch.csv")
	_ = os.WriteFile(batch, []byte(csv.String()), 0o644)
	out := filepath.Join(dir, "out")
	args := append(append([]string{"enroll", "--credential", e.secret}, e.args...), "--batch", batch, "--out", out, "--parallel", "8")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first := exec.CommandContext(ctx, binaryPath, args...)
	first.Env = childEnv()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	results := filepath.Join(out, "results.csv")
	for lines(results) < 80 {
		if ctx.Err() != nil {
			t.Fatal("the first run did not get half way")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = first.Process.Signal(syscall.SIGKILL)
	_ = first.Wait()
	half := lines(results)
	if half >= 200 {
		t.Fatalf("the first run finished before it was killed (%d lines)", half)
	}
	t.Logf("killed after %d of 200", half)

	r := runCLI(t, "", args...)
	if r.code != 0 {
		t.Fatalf("re-run: %d\n%s", r.code, r.stderr[max(0, len(r.stderr)-1500):])
	}
	if n := lines(results); n != 200 {
		t.Fatalf("results.csv has %d lines, want 200", n)
	}
	if n := countRows(t, e.data, "SELECT count(*) FROM certificates"); n != 200 {
		t.Fatalf("the server issued %d certificates for 200 devices", n)
	}
	if n := countRows(t, e.data, "SELECT count(*) FROM devices"); n != 200 {
		t.Fatalf("the server has %d devices, want 200", n)
	}
}

func lines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		n++
	}
	return n
}
