package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serviceEnv is a serve whose service profiles live validity (short, so
// that renewals happen within a test), a device credential and a service
// credential allowed the names 127.0.0.1 and localhost.
type serviceEnv struct {
	*enrollEnv
	serviceCredFile string
}

func newServiceEnv(t *testing.T, validity string) *serviceEnv {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(data, "profiles"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, eku := range map[string]string{"server": `["serverAuth"]`, "broker": `["serverAuth","clientAuth"]`} {
		spec := fmt.Sprintf(`{"name":%q,"kind":"service","validity":%q,"extKeyUsage":%s}`, name, validity, eku)
		if err := os.WriteFile(filepath.Join(data, "profiles", name+".json"), []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv := startServe(t, "--data-dir", data, "--http-addr", "127.0.0.1:0", "--enroll-rate", "0")
	secret := mustRun(t, "", "credential", "create", "--data-dir", data, "--name", "station", "--device-pattern", `dev-[0-9]+`).lastLine()
	svc := mustRun(t, "", "credential", "create", "--data-dir", data, "--name", "services", "--profile", "server,broker",
		"--name-pattern", `localhost|127\.0\.0\.1`).lastLine()
	credFile := filepath.Join(t.TempDir(), "services.credential")
	if err := os.WriteFile(credFile, []byte(svc+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &serviceEnv{enrollEnv: &enrollEnv{srv: srv, data: data, secret: secret,
		args: []string{"--server", "https://" + srv.httpsAddr, "--fingerprint", srv.fingerprint}}, serviceCredFile: credFile}
}

// fileSerial is the serial of the certificate in a PEM file.
func fileSerial(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return certSerial(t, b)
}

// presentedSerial is the serial of the certificate a TLS server at addr
// presents, verified against root for 127.0.0.1 (a new connection each time).
func presentedSerial(t *testing.T, addr, rootFile string) string {
	t.Helper()
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(rootFile)
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no root in %s", rootFile)
	}
	// The servers here want a client certificate; the verification of
	// theirs is done before that is asked for.
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS to %s verifying against the fleetpki root: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

// waitFor polls cond every 100 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// A device credential cannot get a server certificate, nor a service
// credential a name outside its pattern: 403 from the command line, and
// nothing issued.
func TestEnrollServiceRefusals(t *testing.T) {
	e := newServiceEnv(t, "30d")
	svc, _ := os.ReadFile(e.serviceCredFile)
	for _, tc := range []struct {
		cred string
		args []string
	}{
		{e.secret, []string{"--profile", "server", "--ip", "127.0.0.1"}},
		{e.secret, []string{"--profile", "broker", "--dns", "localhost", "--device-id", "dev-9"}},
		{strings.TrimSpace(string(svc)), []string{"--profile", "server", "--dns", "pki.example.com"}},
		{strings.TrimSpace(string(svc)), []string{"--profile", "server", "--dns", "localhost", "--ip", "10.1.2.3"}},
	} {
		out := t.TempDir()
		args := append(append([]string{"enroll", "--credential", tc.cred, "--out", out}, e.args...), tc.args...)
		r := runCLI(t, "", args...)
		if r.code == 0 || !strings.Contains(r.stderr, "403") {
			t.Errorf("enroll %v: exit %d, want a 403 refusal:\n%s", tc.args, r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(out, "server.crt")); err == nil {
			t.Errorf("enroll %v wrote a certificate", tc.args)
		}
	}
	if n := countRows(t, e.data, "SELECT count(*) FROM certificates"); n != 0 {
		t.Fatalf("%d certificates issued by refused requests", n)
	}
}

// The standalone broker, given only the server, the root's fingerprint
// and a credential: it enrolls its certificate, devices verify it against
// the fleetpki root, it renews (15 s certificates here) while a
// mosquitto_sub session stays connected and receives, new connections see
// the new certificate, its own certificate opens the revocation event
// stream, and a restart without the credential reuses what it keeps.
func TestBrokerEnrollsItself(t *testing.T) {
	needTool(t, "mosquitto_sub", "mosquitto_pub")
	e := newServiceEnv(t, "15s")
	dir := t.TempDir()
	for _, id := range []string{"dev-1", "dev-2", "dev-3"} {
		if r := e.enroll(t, "--device-id", id, "--out", filepath.Join(dir, id)); r.code != 0 {
			t.Fatalf("enroll %s: %s", id, r.stderr)
		}
	}
	state := filepath.Join(dir, "broker-state")
	// dev-1 listens to every device's temperature; dev-3 publishes its own.
	acl := filepath.Join(dir, "acl")
	_ = os.WriteFile(acl, []byte("pubsub devices/{device_id}/#\nsub devices/+/temp\n"), 0o600)
	brokerArgs := []string{"broker", "--log-format", "text", "--mqtt-addr", "127.0.0.1:0", "--server", "https://" + e.srv.httpsAddr,
		"--fingerprint", e.srv.fingerprint, "--ip", "127.0.0.1", "--dns", "localhost", "--data-dir", state,
		"--recheck-interval", "1h", "--ocsp-url", e.srv.url("/ocsp"), "--mqtt-acl-file", acl}
	addr, stop := startProc(t, mqttRE, append(brokerArgs, "--credential-file", e.serviceCredFile)...)
	host, port, _ := net.SplitHostPort(addr)
	root := filepath.Join(dir, "dev-1", "root.pem") // what the device got at enrollment
	first := fileSerial(t, filepath.Join(state, "server.crt"))
	if got := presentedSerial(t, addr, root); got != first {
		t.Fatalf("the broker presents %s, its state directory holds %s", got, first)
	}
	for _, name := range []string{"server.key", "server.crt", "fullchain.pem", "chain.pem", "root.pem"} {
		if _, err := os.Stat(filepath.Join(state, name)); err != nil {
			t.Fatal(err)
		}
	}

	device := func(id string) []string {
		d := filepath.Join(dir, id)
		return []string{"-h", host, "-p", port, "--cafile", filepath.Join(d, "root.pem"), "--cert", filepath.Join(d, "device.crt"),
			"--key", filepath.Join(d, "device.key"), "-i", id}
	}
	// -d: mosquitto_sub logs each CONNECT it sends, so a silent reconnect
	// would show.
	sub := exec.Command("mosquitto_sub", append(device("dev-1"), "-t", "devices/+/temp", "-q", "1", "-v", "-d")...)
	subOut, _ := sub.StdoutPipe()
	subErr := &lockedBuffer{}
	sub.Stderr = subErr
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Process.Kill(); _ = sub.Wait() })
	lines := make(chan string, 64)
	var connects atomic.Int32
	go func() {
		sc := bufio.NewScanner(subOut)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "sending CONNECT") {
				connects.Add(1)
			}
			lines <- sc.Text()
		}
		close(lines)
	}()
	publish := func(msg string) {
		t.Helper()
		if out, err := exec.Command("mosquitto_pub", append(device("dev-3"), "-t", "devices/dev-3/temp", "-q", "1", "-m", msg)...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub %s: %v %s", msg, err, out)
		}
	}
	receive := func(msg string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("mosquitto_sub ended: %s", subErr.String())
				}
				if l == "devices/dev-3/temp "+msg {
					return
				}
			case <-deadline:
				t.Fatalf("mosquitto_sub did not receive %q: %s", msg, subErr.String())
			}
		}
	}
	// mosquitto_sub may take a moment to subscribe: publish until it hears.
	if !waitFor(10*time.Second, func() bool {
		publish("before")
		for {
			select {
			case l := <-lines:
				if l == "devices/dev-3/temp before" {
					return true
				}
			case <-time.After(300 * time.Millisecond):
				return false
			}
		}
	}) {
		t.Fatalf("mosquitto_sub never received: %s", subErr.String())
	}

	// Renewal at two thirds of 15 s; the live session stays.
	if !waitFor(20*time.Second, func() bool { return fileSerial(t, filepath.Join(state, "server.crt")) != first }) {
		t.Fatal("the broker did not renew its certificate within 20 s")
	}
	second := fileSerial(t, filepath.Join(state, "server.crt"))
	if got := presentedSerial(t, addr, root); got != second {
		t.Fatalf("after renewal a new connection sees %s, want the new %s", got, second)
	}
	publish("after")
	receive("after")
	if n := connects.Load(); n != 1 {
		t.Fatalf("mosquitto_sub connected %d times; its session did not survive the renewal", n)
	}

	// The broker follows revocations as itself (profile broker, mutual
	// TLS, no token): a live session of dev-2 ends at once although the
	// re-check interval is an hour.
	lost := make(chan struct{})
	sub2 := exec.Command("mosquitto_sub", append(device("dev-2"), "-t", "devices/dev-2/#", "-q", "1")...)
	sub2Err := &lockedBuffer{}
	sub2.Stderr = sub2Err
	if err := sub2.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = sub2.Wait(); close(lost) }()
	t.Cleanup(func() { _ = sub2.Process.Kill() })
	time.Sleep(500 * time.Millisecond)
	crt2, _ := os.ReadFile(filepath.Join(dir, "dev-2", "device.crt"))
	start := time.Now()
	if r := runCLI(t, "", "revoke", "--data-dir", e.data, "--serial", certSerial(t, crt2), "--reason", "keyCompromise"); r.code != 0 {
		t.Fatalf("revoke: %s", r.stderr)
	}
	select {
	case <-lost:
		t.Logf("the self-enrolled broker dropped the revoked device %v after the revocation", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatalf("the broker kept a revoked device's session for 5 s (its event stream is not following): %s", sub2Err.String())
	}

	// A restart without the credential serves on from its state directory.
	stop()
	addr, _ = startProc(t, mqttRE, brokerArgs...)
	if got, want := presentedSerial(t, addr, root), fileSerial(t, filepath.Join(state, "server.crt")); got != want {
		t.Fatalf("after a restart the broker presents %s, want %s from its state directory", got, want)
	}
}

// Mosquitto with a server certificate from fleetpki, kept fresh by
// `fleetpki enroll --renew --exec 'kill -HUP …'`: clients verify it with
// the fleetpki root, and after a renewal new connections get the new one.
func TestMosquittoWithRenewedServerCertificate(t *testing.T) {
	needTool(t, "mosquitto", "mosquitto_pub")
	e := newServiceEnv(t, "15s")
	dir := t.TempDir()
	out := filepath.Join(dir, "mosquitto-tls")
	credArgs := []string{"--profile", "server", "--ip", "127.0.0.1", "--out", out}
	svc, _ := os.ReadFile(e.serviceCredFile)
	enroll := append(append([]string{"enroll", "--credential", strings.TrimSpace(string(svc))}, e.args...), credArgs...)
	if r := runCLI(t, "", enroll...); r.code != 0 {
		t.Fatalf("enroll --profile server: %s", r.stderr)
	}
	first := fileSerial(t, filepath.Join(out, "server.crt"))
	if v, err := exec.Command("openssl", "verify", "-purpose", "sslserver", "-CAfile", filepath.Join(out, "root.pem"),
		"-untrusted", filepath.Join(out, "chain.pem"), filepath.Join(out, "server.crt")).CombinedOutput(); err != nil || !strings.Contains(string(v), ": OK") {
		t.Fatalf("openssl verify -purpose sslserver: %v %s", err, v)
	}
	if r := e.enroll(t, "--device-id", "dev-1", "--out", filepath.Join(dir, "dev-1")); r.code != 0 {
		t.Fatalf("enroll dev-1: %s", r.stderr)
	}

	port := freePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	_ = os.WriteFile(conf, []byte(fmt.Sprintf(`user root
log_dest stderr
per_listener_settings true
listener %d 127.0.0.1
allow_anonymous true
cafile %s
certfile %s
keyfile %s
require_certificate true
`, port, filepath.Join(out, "chain.pem"), filepath.Join(out, "fullchain.pem"), filepath.Join(out, "server.key"))), 0o600)
	broker := exec.Command("mosquitto", "-c", conf)
	blog := &lockedBuffer{}
	broker.Stdout, broker.Stderr = blog, blog
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = broker.Process.Kill(); _ = broker.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if !waitFor(10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("mosquitto did not start:\n%s", blog.String())
	}
	if got := presentedSerial(t, addr, filepath.Join(out, "root.pem")); got != first {
		t.Fatalf("mosquitto presents %s, want %s", got, first)
	}

	renewer := exec.Command(binaryPath, append(enroll, "--renew", "--exec", "kill -HUP "+strconv.Itoa(broker.Process.Pid))...)
	renewer.Env = childEnv()
	rlog := &lockedBuffer{}
	renewer.Stdout, renewer.Stderr = rlog, rlog
	if err := renewer.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = renewer.Process.Kill(); _ = renewer.Wait() })

	var second string
	if !waitFor(25*time.Second, func() bool {
		second = fileSerial(t, filepath.Join(out, "server.crt"))
		return second != first && strings.Contains(rlog.String(), "--exec ran")
	}) {
		t.Fatalf("no renewal with --exec within 25 s:\n%s", rlog.String())
	}
	if !waitFor(5*time.Second, func() bool { return presentedSerial(t, addr, filepath.Join(out, "root.pem")) == second }) {
		t.Fatalf("after the renewal mosquitto still presents the old certificate:\n%s", blog.String())
	}
	d := filepath.Join(dir, "dev-1")
	if o, err := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "--cafile", filepath.Join(d, "root.pem"),
		"--cert", filepath.Join(d, "device.crt"), "--key", filepath.Join(d, "device.key"), "-i", "dev-1",
		"-t", "devices/dev-1/temp", "-m", "1", "-q", "1").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub verifying the renewed certificate with the fleetpki root: %v %s", err, o)
	}
	// The key file changed with the certificate (a new key each renewal)
	// and matches it.
	a, _ := exec.Command("openssl", "pkey", "-in", filepath.Join(out, "server.key"), "-pubout").Output()
	b, _ := exec.Command("openssl", "x509", "-in", filepath.Join(out, "server.crt"), "-noout", "-pubkey").Output()
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatal("server.key does not match server.crt after the renewal")
	}
	if blk, _ := pem.Decode(mustRead(t, filepath.Join(out, "fullchain.pem"))); blk == nil || certSerial(t, pem.EncodeToMemory(blk)) != second {
		t.Fatal("fullchain.pem does not start with the renewed certificate")
	}
}
