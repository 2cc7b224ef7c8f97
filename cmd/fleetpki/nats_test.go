package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// natsServer is nats-server v2.15.2 (go install
// github.com/nats-io/nats-server/v2@v2.15.2), or "" when it is missing.
func natsServer(t *testing.T) string {
	t.Helper()
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	for _, p := range []string{os.Getenv("FLEETPKI_NATS_SERVER"), filepath.Join(strings.TrimSpace(string(gopath)), "bin", "nats-server")} {
		if p == "" {
			continue
		}
		if out, err := exec.Command(p, "--version").Output(); err == nil && strings.Contains(string(out), "v2.15.2") {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nats-server v2.15.2 is required in CI (scripts/test.sh installs it)")
	}
	t.Skip("nats-server v2.15.2 is not installed (go install github.com/nats-io/nats-server/v2@v2.15.2)")
	return ""
}

// NATS server's MQTT listener verifies fleetpki devices over OCSP itself
// (ocsp_peer), with its default OCSP cache, which trusts a good answer
// until its nextUpdate (plus its allowed clock skew). With --ocsp-validity
// 20s a revoked device is admitted at most until the answer NATS cached
// runs out, then refused.
func TestNATSRefusesRevokedDeviceWithinValidity(t *testing.T) {
	nats := natsServer(t)
	needTool(t, "mosquitto_pub")
	const validity = 20 * time.Second
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	httpPort := freePort(t)
	public := "http://127.0.0.1:" + strconv.Itoa(httpPort)
	// NATS asks the responder the device certificates name: the public URL must be real.
	srv := startServe(t, "--data-dir", data, "--http-addr", "127.0.0.1:"+strconv.Itoa(httpPort), "--public-url", public,
		"--ocsp-validity", validity.String(), "--enroll-rate", "0")
	station := mustRun(t, "", "credential", "create", "--data-dir", data, "--name", "station", "--device-pattern", `dev-[0-9]+`).lastLine()
	svc := mustRun(t, "", "credential", "create", "--data-dir", data, "--name", "nats", "--profile", "server", "--name-pattern", `127\.0\.0\.1`).lastLine()
	e := &enrollEnv{srv: srv, data: data, secret: station, args: []string{"--server", "https://" + srv.httpsAddr, "--fingerprint", srv.fingerprint}}
	dev := filepath.Join(dir, "dev-1")
	if r := e.enroll(t, "--device-id", "dev-1", "--out", dev); r.code != 0 {
		t.Fatalf("enroll: %s", r.stderr)
	}
	tlsDir := filepath.Join(dir, "nats-tls")
	if r := runCLI(t, "", append(append([]string{"enroll", "--credential", svc}, e.args...), "--profile", "server", "--ip", "127.0.0.1", "--out", tlsDir)...); r.code != 0 {
		t.Fatalf("the NATS server certificate: %s", r.stderr)
	}

	port, mqttPort := freePort(t), freePort(t)
	conf := filepath.Join(dir, "nats.conf")
	_ = os.WriteFile(conf, []byte(fmt.Sprintf(`server_name: fleetpki-test
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
# NATS's default cache (local), kept in the test's directory.
ocsp_cache { type: local, local_store: %q }
mqtt {
  listen: 127.0.0.1:%d
  tls {
    cert_file: %q
    key_file: %q
    ca_file: %q
    verify: true
    # allowed_clockskew (default 30 s) extends a cached answer past its
    # nextUpdate: the bound is --ocsp-validity plus it.
    ocsp_peer { verify: true, ca_timeout: 2, allowed_clockskew: 2 }
  }
}
`, port, filepath.Join(dir, "js"), filepath.Join(dir, "ocsp-cache"), mqttPort, filepath.Join(tlsDir, "fullchain.pem"), filepath.Join(tlsDir, "server.key"),
		filepath.Join(tlsDir, "chain.pem"))), 0o600)
	cmd := exec.Command(nats, "-c", conf)
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	if !waitFor(15*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(mqttPort), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("nats-server did not start:\n%s", log.String())
	}
	pub := func() error {
		out, err := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", strconv.Itoa(mqttPort), "--cafile", filepath.Join(dev, "root.pem"),
			"--cert", filepath.Join(dev, "device.crt"), "--key", filepath.Join(dev, "device.key"), "-i", "dev-1",
			"-t", "devices/dev-1/temp", "-m", "1", "-q", "0").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := pub(); err != nil {
		t.Fatalf("NATS refused a valid fleetpki device: %v\n%s", err, log.String())
	}
	crt := mustRead(t, filepath.Join(dev, "device.crt"))
	if r := runCLI(t, "", "revoke", "--data-dir", data, "--serial", certSerial(t, crt), "--reason", "keyCompromise"); r.code != 0 {
		t.Fatalf("revoke: %s", r.stderr)
	}
	revoked := time.Now()
	if !waitFor(validity+10*time.Second, func() bool { return pub() != nil }) {
		t.Fatalf("NATS still admits the device %v after its revocation (OCSP validity %v):\n%s", time.Since(revoked), validity, log.String())
	}
	d := time.Since(revoked)
	t.Logf("NATS (default OCSP cache) refused the revoked device %v after the revocation; OCSP validity %v", d.Round(100*time.Millisecond), validity)
	if d > validity+2*time.Second+3*time.Second {
		t.Errorf("refused after %v, over the %v bound", d, validity)
	}
}
