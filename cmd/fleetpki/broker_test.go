package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

var mqttRE = regexp.MustCompile(`msg=listening listener=mqtt addr=(\S+)`)

func (s *server) mqttAddr(t *testing.T) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := mqttRE.FindStringSubmatch(s.log.String()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("serve did not log its MQTT listener\n%s", s.log.String())
	return ""
}

// TestBundledBrokerRevocation is the product's promise end to end: a device
// enrolled by the station client publishes with mosquitto_pub, stays
// subscribed with paho, and is disconnected within a second of its
// revocation through the REST API (by curl); it cannot reconnect.
func TestBundledBrokerRevocation(t *testing.T) {
	e := newEnrollEnv(t)
	out := filepath.Join(t.TempDir(), "dev-7")
	if r := e.enroll(t, "--device-id", "dev-7", "--out", out); r.code != 0 {
		t.Fatalf("enroll: %s", r.stderr)
	}
	addr := e.srv.mqttAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	file := func(n string) string { return filepath.Join(out, n) }
	pub := func() ([]byte, error) {
		return exec.Command("mosquitto_pub", "-h", host, "-p", port, "--cafile", file("root.pem"), "--cert", file("device.crt"),
			"--key", file("device.key"), "-i", "dev-7", "-q", "1", "-t", "devices/dev-7/temp", "-m", "20.5").CombinedOutput()
	}
	if o, err := pub(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, o)
	}

	kp, err := tls.LoadX509KeyPair(file("device.crt"), file("device.key"))
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := os.ReadFile(file("root.pem"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	lost := make(chan time.Time, 1)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + addr).SetClientID("dev-7").SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}).
		SetConnectionLostHandler(func(paho.Client, error) { lost <- time.Now() }))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("paho connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.Subscribe("devices/dev-7/cmd", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	crt, _ := os.ReadFile(file("device.crt"))
	serial := certSerial(t, crt)
	token := mustRun(t, "", "user", "token", "--data-dir", e.data, "--name", "admin").lastLine()
	start := time.Now()
	resp, err := exec.Command("curl", "-sS", "--cacert", file("root.pem"), "-H", "Authorization: Bearer "+token,
		"-H", "Content-Type: application/json", "--data-binary", `{"reason":"keyCompromise"}`,
		"https://"+e.srv.httpsAddr+"/api/v1/certificates/"+serial+"/revoke").CombinedOutput()
	var rec struct{ Status string }
	if err != nil || json.Unmarshal(resp, &rec) != nil || rec.Status != "revoked" {
		t.Fatalf("revoke: %v %s", err, resp)
	}
	select {
	case at := <-lost:
		d := at.Sub(start)
		t.Logf("the subscribed device was disconnected %v after the revoke request was sent", d)
		if d > time.Second {
			t.Fatalf("disconnected after %v, want < 1 s", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the revoked device is still connected 3 s after its revocation")
	}
	if o, err := pub(); err == nil {
		t.Fatalf("mosquitto_pub with the revoked certificate was admitted:\n%s", o)
	}
	if m := e.srv.metrics(t); !strings.Contains(m, "fleetpki_mqtt_revoked_disconnects_total 1") {
		t.Errorf("metrics lack the revoked disconnect")
	}
	e.srv.stop(t)
}

// certSerial returns a PEM certificate's serial as the API names it (lower-case hex).
func certSerial(t *testing.T, pemBytes []byte) string {
	t.Helper()
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatal("not PEM")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Text(16)
}

func (s *server) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(s.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// `fleetpki revoke` in another process, on the same SQLite file, reaches a
// running serve: the device's MQTT session ends and OCSP answers revoked.
func TestRevokeCommandReachesServe(t *testing.T) {
	e := newEnrollEnv(t)
	out := filepath.Join(t.TempDir(), "dev-8")
	if r := e.enroll(t, "--device-id", "dev-8", "--out", out); r.code != 0 {
		t.Fatalf("enroll: %s", r.stderr)
	}
	file := func(n string) string { return filepath.Join(out, n) }
	kp, err := tls.LoadX509KeyPair(file("device.crt"), file("device.key"))
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := os.ReadFile(file("root.pem"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	lost := make(chan time.Time, 1)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + e.srv.mqttAddr(t)).SetClientID("dev-8").SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}).
		SetConnectionLostHandler(func(paho.Client, error) { lost <- time.Now() }))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("paho connect: %v", tok.Error())
	}
	defer c.Disconnect(0)

	crt, _ := os.ReadFile(file("device.crt"))
	serial := certSerial(t, crt)
	start := time.Now()
	r := runCLI(t, "", "revoke", "--data-dir", e.data, "--serial", serial, "--reason", "keyCompromise")
	if r.code != 0 || !strings.Contains(r.stdout, serial+"\tdev-8\trevoked\tkeyCompromise") {
		t.Fatalf("revoke: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	select {
	case at := <-lost:
		t.Logf("disconnected %v after `fleetpki revoke` started", at.Sub(start))
	case <-time.After(3 * time.Second):
		t.Fatal("the session survived a revocation made by `fleetpki revoke` for 3 s")
	}
	chain, _ := os.ReadFile(file("chain.pem"))
	blk, _ := pem.Decode(chain)
	_ = os.WriteFile(file("issuer.pem"), pem.EncodeToMemory(blk), 0o644)
	o, err := exec.Command("openssl", "ocsp", "-issuer", file("issuer.pem"), "-cert", file("device.crt"), "-url", e.srv.url("/ocsp"),
		"-CAfile", file("root.pem"), "-no_nonce").CombinedOutput()
	if err != nil || !strings.Contains(string(o), "device.crt: revoked") {
		t.Fatalf("OCSP after `fleetpki revoke`: %v\n%s", err, o)
	}
	// Usage errors.
	if r := runCLI(t, "", "revoke", "--data-dir", e.data, "--serial", serial, "--device-id", "dev-8"); r.code != 2 {
		t.Errorf("revoke with both --serial and --device-id: exit %d", r.code)
	}
	if r := runCLI(t, "", "revoke", "--data-dir", e.data, "--serial", "abcdef", "--reason", "lost"); r.code != 2 {
		t.Errorf("revoke with an unknown reason: exit %d", r.code)
	}
}

// crl export against a remote fleetpki (--url) writes the served CRL, checked
// against --ca-file, and refuses one signed by another CA.
func TestCRLExportRemote(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	srv := startServe(t, "--data-dir", data, "--http-addr", "127.0.0.1:0")
	chain := filepath.Join(dir, "chain.pem")
	if err := os.WriteFile(chain, []byte(get(t, srv.url("/ca.pem"), 200, "", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "fleet.crl.pem")
	// An empty data directory: the CRL comes from --url alone.
	r := runCLI(t, "", "crl", "export", "--data-dir", filepath.Join(dir, "empty"), "--url", "http://"+srv.addr, "--ca-file", chain, "--out", out)
	if r.code != 0 {
		t.Fatalf("crl export --url: %d\n%s", r.code, r.stderr)
	}
	got, _ := os.ReadFile(out)
	if want := get(t, srv.url("/crl.pem"), 200, "", ""); string(got) != want {
		t.Fatalf("exported CRL differs from /crl.pem")
	}
	if o, err := exec.Command("openssl", "crl", "-in", out, "-CAfile", chain, "-noout").CombinedOutput(); err != nil || !strings.Contains(string(o), "verify OK") {
		t.Fatalf("openssl crl: %v %s", err, o)
	}
	// Another CA's chain: the CRL's signature does not verify, nothing is written.
	other := filepath.Join(dir, "other")
	mustRun(t, "", "init", "--data-dir", other)
	otherChain := filepath.Join(other, "ca", "chain.pem")
	out2 := filepath.Join(dir, "other.crl.pem")
	if r := runCLI(t, "", "crl", "export", "--data-dir", filepath.Join(dir, "empty2"), "--url", "http://"+srv.addr, "--ca-file", otherChain, "--out", out2); r.code == 0 {
		t.Fatal("crl export accepted a CRL that the given CA did not sign")
	} else if !strings.Contains(r.stderr, "CRL is not signed by") {
		t.Errorf("crl export with another CA: %s", r.stderr)
	}
	if _, err := os.Stat(out2); !os.IsNotExist(err) {
		t.Fatal("a refused CRL was written")
	}
}

// TestStandaloneBroker: `fleetpki broker` checks devices over a running
// serve's OCSP: a valid device publishes, a revoked one is dropped from its
// live session at the next re-check and refused after; with the responder
// stopped, new connections are refused, unless a fail-open grace is set and
// the device's last good answer is within it.
func TestStandaloneBroker(t *testing.T) {
	e := newEnrollEnv(t)
	dir := t.TempDir()
	devs := map[string]string{}
	for _, id := range []string{"dev-1", "dev-2", "dev-3"} {
		devs[id] = filepath.Join(dir, id)
		if r := e.enroll(t, "--device-id", id, "--out", devs[id]); r.code != 0 {
			t.Fatalf("enroll: %s", r.stderr)
		}
	}
	chain := filepath.Join(dir, "chain.pem")
	_ = os.WriteFile(chain, []byte(get(t, e.srv.url("/ca.pem"), 200, "", "")), 0o600)
	// The broker's own certificate, from a throw-away CA of the test.
	bkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	btmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	bder, _ := x509.CreateCertificate(rand.Reader, btmpl, btmpl, bkey.Public(), bkey)
	bkeyDER, _ := x509.MarshalECPrivateKey(bkey)
	bcert := pemFile(t, filepath.Join(dir, "broker.crt"), "CERTIFICATE", bder)
	bkeyFile := pemFile(t, filepath.Join(dir, "broker.key"), "EC PRIVATE KEY", bkeyDER)
	start := func(extra ...string) string {
		addr, _ := startProc(t, mqttRE, append([]string{"broker", "--log-format", "text", "--mqtt-addr", "127.0.0.1:0", "--ca-file", chain,
			"--tls-cert", bcert, "--tls-key", bkeyFile, "--ocsp-url", e.srv.url("/ocsp"), "--ocsp-max-age", "200ms",
			"--recheck-interval", "300ms"}, extra...)...)
		return addr
	}
	closed, graceful := start(), start("--fail-open-grace", "1m")
	pub := func(addr, id string) error {
		host, port, _ := net.SplitHostPort(addr)
		d := devs[id]
		out, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "--cafile", bcert, "--cert", filepath.Join(d, "device.crt"),
			"--key", filepath.Join(d, "device.key"), "-i", id, "-q", "1", "-t", "devices/"+id+"/temp", "-m", "1").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	for _, addr := range []string{closed, graceful} {
		if err := pub(addr, "dev-1"); err != nil {
			t.Fatalf("a valid device was refused: %v", err)
		}
	}

	// A live session of dev-2 ends at the re-check after its revocation.
	kp, _ := tls.LoadX509KeyPair(filepath.Join(devs["dev-2"], "device.crt"), filepath.Join(devs["dev-2"], "device.key"))
	bpool := x509.NewCertPool()
	bpool.AddCert(mustParse(t, bder))
	lost := make(chan time.Time, 1)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + closed).SetClientID("dev-2").SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: bpool, Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}).
		SetConnectionLostHandler(func(paho.Client, error) { lost <- time.Now() }))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("paho connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	crt, _ := os.ReadFile(filepath.Join(devs["dev-2"], "device.crt"))
	if r := runCLI(t, "", "revoke", "--data-dir", e.data, "--serial", certSerial(t, crt), "--reason", "keyCompromise"); r.code != 0 {
		t.Fatalf("revoke: %s", r.stderr)
	}
	revokedAt := time.Now()
	select {
	case at := <-lost:
		t.Logf("standalone broker dropped the revoked device %v after the revocation", at.Sub(revokedAt))
	case <-time.After(5 * time.Second):
		t.Fatal("the standalone broker kept a revoked device's session for 5 s")
	}
	if err := pub(closed, "dev-2"); err == nil {
		t.Fatal("the standalone broker admitted a revoked device")
	}

	// With the event stream, a revocation through the API ends a live session
	// at once although the re-check interval is long (each hint is confirmed
	// over OCSP first).
	// The stream is authenticated: a broker identity's token, over HTTPS
	// verified against the chain; anonymous and non-broker callers are refused.
	eventsURL := "https://" + e.srv.httpsAddr + "/api/v1/revocations/events"
	mustRun(t, "", "user", "create", "--data-dir", e.data, "--name", "edge-1", "--role", "broker")
	brokerToken := mustRun(t, "", "user", "token", "--data-dir", e.data, "--name", "edge-1").lastLine()
	tokenFile := filepath.Join(dir, "events.token")
	_ = os.WriteFile(tokenFile, []byte(brokerToken+"\n"), 0o600)
	mustRun(t, "", "user", "create", "--data-dir", e.data, "--name", "reader", "--role", "auditor")
	auditorToken := mustRun(t, "", "user", "token", "--data-dir", e.data, "--name", "reader").lastLine()
	for _, tc := range []struct {
		token string
		want  string
	}{{"", "401"}, {auditorToken, "403"}} {
		args := []string{"-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", eventsURL}
		if tc.token != "" {
			args = append(args, "-H", "Authorization: Bearer "+tc.token)
		}
		if out, _ := exec.Command("curl", args...).Output(); string(out) != tc.want {
			t.Errorf("event stream with token %.8q: HTTP %s, want %s", tc.token, out, tc.want)
		}
	}
	streamed, _ := startProc(t, mqttRE, "broker", "--log-format", "text", "--mqtt-addr", "127.0.0.1:0", "--ca-file", chain,
		"--tls-cert", bcert, "--tls-key", bkeyFile, "--ocsp-url", e.srv.url("/ocsp"), "--recheck-interval", "1h",
		"--events-url", eventsURL, "--events-token-file", tokenFile)
	kp3, _ := tls.LoadX509KeyPair(filepath.Join(devs["dev-3"], "device.crt"), filepath.Join(devs["dev-3"], "device.key"))
	lost3 := make(chan time.Time, 1)
	c3 := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + streamed).SetClientID("dev-3").SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: bpool, Certificates: []tls.Certificate{kp3}, MinVersion: tls.VersionTLS12}).
		SetConnectionLostHandler(func(paho.Client, error) { lost3 <- time.Now() }))
	if tok := c3.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("paho connect: %v", tok.Error())
	}
	defer c3.Disconnect(0)
	time.Sleep(300 * time.Millisecond) // the broker's event stream is connected by now
	crt3, _ := os.ReadFile(filepath.Join(devs["dev-3"], "device.crt"))
	token := mustRun(t, "", "user", "token", "--data-dir", e.data, "--name", "admin").lastLine()
	start3 := time.Now()
	if out, err := exec.Command("curl", "-sSk", "-H", "Authorization: Bearer "+token, "-H", "Content-Type: application/json",
		"--data-binary", `{"reason":"keyCompromise"}`, "https://"+e.srv.httpsAddr+"/api/v1/certificates/"+certSerial(t, crt3)+"/revoke").CombinedOutput(); err != nil || !strings.Contains(string(out), "revoked") {
		t.Fatalf("revoke dev-3: %v %s", err, out)
	}
	select {
	case at := <-lost3:
		d := at.Sub(start3)
		t.Logf("with the event stream, the standalone broker dropped the revoked device %v after the API call", d)
		if d > time.Second {
			t.Errorf("dropped after %v, want < 1 s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the standalone broker with the event stream kept a revoked device's session for 5 s")
	}

	// The responder goes away: fail closed, except within the grace.
	e.srv.stop(t)
	time.Sleep(300 * time.Millisecond) // past --ocsp-max-age
	if err := pub(closed, "dev-1"); err == nil {
		t.Fatal("with the responder down, the fail-closed broker admitted a device")
	}
	if err := pub(graceful, "dev-1"); err != nil {
		t.Fatalf("with the responder down, the broker with a grace refused a device last seen good: %v", err)
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
