package main

import (
	"bufio"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/store/postgres/pgtest"
)

var ocspOnlyRE = regexp.MustCompile(`msg=listening listener=ocsp addr=(\S+)`)

// startOCSPOnly runs `fleetpki ocsp` and returns its address.
func startOCSPOnly(t *testing.T, args ...string) (addr string, stop func()) {
	t.Helper()
	return startProc(t, ocspOnlyRE, append([]string{"ocsp", "--log-format", "text", "--http-addr", "127.0.0.1:0"}, args...)...)
}

// startProc runs the binary with args until the test ends and returns the
// first submatch of re in its log (the address it listens on).
func startProc(t *testing.T, re *regexp.Regexp, args ...string) (addr string, stop func()) {
	t.Helper()
	cmd := exec.Command(binaryPath, args...)
	cmd.Env = childEnv()
	pipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log := &lockedBuffer{}
	found := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			log.writeLine(sc.Text())
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	stop = func() { _ = cmd.Process.Kill(); <-done; _ = cmd.Wait() }
	t.Cleanup(stop)
	select {
	case addr = <-found:
		return addr, stop
	case <-done:
		t.Fatalf("fleetpki %s exited:\n%s", args[0], log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("fleetpki %s did not start:\n%s", args[0], log.String())
	}
	return "", nil
}

// TestResponderOnly: `fleetpki ocsp` holds no key and answers from what
// serve pre-signed: good for a device enrolled moments before, revoked
// within a second of a revocation through serve's API, and still answering
// (with the same signed responses) after serve has stopped.
func TestResponderOnly(t *testing.T) {
	db := pgtest.NewDatabase(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	srv := startServe(t, "--data-dir", data, "--http-addr", "127.0.0.1:0", "--database-url", db)
	secret := mustRun(t, "", "credential", "create", "--data-dir", data, "--database-url", db, "--name", "line").lastLine()
	token := mustRun(t, "", "user", "token", "--data-dir", data, "--database-url", db, "--name", "admin").lastLine()
	rootDER := []byte(get(t, srv.url("/ca/root.crt"), 200, "", ""))
	certDir := t.TempDir()
	serial := enrollDevice(t, srv, rootDER, secret, "sensor-1", certDir)
	chain := filepath.Join(dir, "chain.pem")
	_ = os.WriteFile(chain, []byte(get(t, srv.url("/ca.pem"), 200, "", "")), 0o600)
	blk, _ := pem.Decode([]byte(get(t, srv.url("/ca.pem"), 200, "", "")))
	issuer := filepath.Join(dir, "issuer.pem")
	_ = os.WriteFile(issuer, pem.EncodeToMemory(blk), 0o600)
	root := filepath.Join(dir, "root.pem")
	_ = os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}), 0o600)

	// An empty data directory: no key of any kind in reach.
	addr, _ := startOCSPOnly(t, "--data-dir", filepath.Join(dir, "empty"), "--database-url", db, "--ca-file", chain)
	query := func(nonce bool) string {
		args := []string{"ocsp", "-issuer", issuer, "-cert", filepath.Join(certDir, "device.crt"), "-url", "http://" + addr + "/ocsp", "-CAfile", root}
		if !nonce {
			args = append(args, "-no_nonce")
		}
		out, _ := exec.Command("openssl", args...).CombinedOutput()
		return string(out)
	}
	start := time.Now()
	for o := query(false); !strings.Contains(o, "device.crt: good"); o = query(false) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("responder-only answer before the revocation:\n%s", o)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if o := query(false); !strings.Contains(o, "Response verify OK") {
		t.Fatalf("responder-only response does not verify:\n%s", o)
	}
	// A nonce cannot be echoed without a key; the answer still verifies.
	if o := query(true); !strings.Contains(o, "device.crt: good") || !strings.Contains(o, "Response verify OK") {
		t.Fatalf("responder-only answer to a nonce request:\n%s", o)
	}

	resp := exec.Command("curl", "-sS", "--cacert", root, "-H", "Authorization: Bearer "+token, "-H", "Content-Type: application/json",
		"--data-binary", `{"reason":"keyCompromise"}`, "https://"+srv.httpsAddr+"/api/v1/certificates/"+serial+"/revoke")
	if out, err := resp.CombinedOutput(); err != nil || !strings.Contains(string(out), `"revoked"`) {
		t.Fatalf("revoke: %v %s", err, out)
	}
	start = time.Now()
	for {
		o := query(false)
		if strings.Contains(o, "device.crt: revoked") && strings.Contains(o, "Response verify OK") {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("responder-only still not revoked %v after the revocation:\n%s", time.Since(start), o)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the responder-only process answered revoked %v after the revocation", time.Since(start))

	srv.stop(t)
	if o := query(false); !strings.Contains(o, "device.crt: revoked") || !strings.Contains(o, "Response verify OK") {
		t.Fatalf("responder-only after serve stopped:\n%s", o)
	}
}
