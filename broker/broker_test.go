package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	stdbig "math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetpki/fleetpki/broker"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/internal/testenv"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store/sqlite"
)

// storeStatus answers from the real store, as serve's in-process checker does.
type storeStatus struct{ st *sqlite.Store }

func (s storeStatus) Revoked(ctx context.Context, leaf, _ *x509.Certificate) (bool, error) {
	rec, err := s.st.GetCertificate(ctx, pki.NewSerial(leaf.SerialNumber))
	if err != nil {
		return false, err
	}
	return rec.Status == pki.CertRevoked, nil
}

// env is a running broker with a real CA and store.
type env struct {
	dir    string
	ca     *ca.CA
	h      *ca.Hierarchy
	addr   string
	reg    *prometheus.Registry
	broker *broker.Broker
	te     *testenv.Env
}

func newEnv(t testing.TB, mutate func(*broker.Config)) *env {
	t.Helper()
	ctx := t.Context()
	te := testenv.New(t, testenv.Options{})
	dir, st, h, c := te.Dir, te.Store, te.Hierarchy, te.CA
	serverCert, err := c.IssueServerCertificate(ctx, []string{"127.0.0.1"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(h.Root())
	events, stop := c.Subscribe(64)
	t.Cleanup(stop)
	reg := prometheus.NewRegistry()
	cfg := broker.Config{
		Listener: ln, Roots: roots, Issuer: h.Intermediate(),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return serverCert, nil },
		Checker:        storeStatus{st}, Revocations: events, Registerer: reg,
		Rules: append(broker.DefaultRules(), broker.Rule{Subscribe: true, Filter: "fleet/broadcast/#"}),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("broker Run: %v", err)
		}
	})
	e := &env{dir: dir, ca: c, h: h, addr: ln.Addr().String(), reg: reg, broker: b, te: te}
	e.writePEM(t, "root.pem", h.Root().Raw)
	return e
}

func (e *env) writePEM(t testing.TB, name string, der []byte, more ...[]byte) string {
	t.Helper()
	var b []byte
	for _, d := range append([][]byte{der}, more...) {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// device is an enrolled device's key and certificate, on disk too.
type device struct {
	id, certFile, keyFile string
	cert                  tls.Certificate
	serial                pki.Serial
}

func (e *env) device(t testing.TB, id string) device {
	t.Helper()
	iss, key := e.te.Issue(t, id)
	return saveDevice(t, e.dir, id, key, iss.Certificate)
}

func saveDevice(t testing.TB, dir, id string, key *ecdsa.PrivateKey, cert *x509.Certificate) device {
	t.Helper()
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	d := device{id: id, certFile: filepath.Join(dir, id+".crt"), keyFile: filepath.Join(dir, id+".key"), serial: pki.NewSerial(cert.SerialNumber)}
	if err := os.WriteFile(d.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	d.cert = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	return d
}

// paho connects a paho client as d (client id = device id unless clientID is set).
func (e *env) paho(t *testing.T, d device, clientID string, onLost func()) (paho.Client, error) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(e.h.Root())
	if clientID == "" {
		clientID = d.id
	}
	opts := paho.NewClientOptions().AddBroker("ssl://" + e.addr).SetClientID(clientID).
		SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{d.cert}, MinVersion: tls.VersionTLS12}).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4).
		SetConnectionLostHandler(func(paho.Client, error) {
			if onLost != nil {
				onLost()
			}
		})
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func mosquittoTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required (Debian's mosquitto-clients; .ci/run installs it): %v", name, err)
	}
	return p
}

// mosquittoPub publishes one QoS 1 message as d with Debian's mosquitto_pub.
func (e *env) mosquittoPub(t *testing.T, d device, clientID, topic string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(e.addr)
	args := []string{"-h", host, "-p", port, "--cafile", filepath.Join(e.dir, "root.pem"), "-q", "1", "-t", topic, "-m", "hello"}
	if d.certFile != "" {
		args = append(args, "--cert", d.certFile, "--key", d.keyFile)
	}
	if clientID == "" {
		clientID = d.id
	}
	args = append(args, "-i", clientID)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, mosquittoTool(t, "mosquitto_pub"), args...).CombinedOutput()
	return string(out), err
}

func TestMosquittoClients(t *testing.T) {
	// An extra rule lets devices read each other's temperatures, so that
	// mosquitto_sub can watch what another device publishes.
	e := newEnv(t, func(c *broker.Config) {
		c.Rules = append(c.Rules, broker.Rule{Subscribe: true, Filter: "devices/+/temp"})
	})
	d1 := e.device(t, "sensor-1")
	d2 := e.device(t, "sensor-2")

	host, port, _ := net.SplitHostPort(e.addr)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, mosquittoTool(t, "mosquitto_sub"), "-h", host, "-p", port, "--cafile", filepath.Join(e.dir, "root.pem"),
		"--cert", d1.certFile, "--key", d1.keyFile, "-i", "sensor-1", "-t", "devices/+/temp", "-C", "1", "-W", "10", "-v")
	var subOut strings.Builder
	sub.Stdout, sub.Stderr = &subOut, &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return e.metric(t, "fleetpki_mqtt_connected_clients") == 1 })
	time.Sleep(200 * time.Millisecond) // the SUBSCRIBE follows the CONNACK

	// Publishing to another device's topic is refused (with QoS 1 on MQTT
	// 3.1.1 the broker drops the connection); to its own, admitted.
	_, _ = e.mosquittoPub(t, d2, "", "devices/sensor-1/temp")
	if out, err := e.mosquittoPub(t, d2, "", "devices/sensor-2/temp"); err != nil {
		t.Fatalf("mosquitto_pub as a valid device to its own topic: %v\n%s", err, out)
	}
	if err := sub.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, subOut.String())
	}
	if got := strings.TrimSpace(subOut.String()); got != "devices/sensor-2/temp hello" {
		t.Fatalf("mosquitto_sub received %q, want only sensor-2's own message", got)
	}
	if got := e.metric(t, "fleetpki_mqtt_refused_total", "acl"); got < 1 {
		t.Errorf("acl refusals = %v, want ≥ 1", got)
	}

	// Refused: another CA's certificate, an expired one, a revoked one, none,
	// and a client id that is not the device id.
	otherDir := t.TempDir()
	oh, err := ca.Init(t.Context(), ca.InitOptions{DataDir: otherDir})
	if err != nil {
		t.Fatal(err)
	}
	foreign := foreignDevice(t, oh, otherDir, "sensor-1")
	expired := e.expiredDevice(t, "sensor-3")
	revoked := e.device(t, "sensor-4")
	if _, err := e.ca.Revoke(t.Context(), revoked.serial, pki.ReasonKeyCompromise, pki.Actor{Name: "test"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, reason string
		d            device
		clientID     string
	}{
		{"another CA", "unknown_ca", foreign, ""},
		{"expired", "expired", expired, ""},
		{"revoked", "revoked", revoked, ""},
		{"no certificate", "", device{id: "sensor-1"}, ""},
		{"client id is not the device id", "identity", d2, "sensor-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before float64
			if tc.reason != "" {
				before = e.metric(t, "fleetpki_mqtt_refused_total", tc.reason)
			}
			out, err := e.mosquittoPub(t, tc.d, tc.clientID, "devices/"+tc.d.id+"/temp")
			if err == nil {
				t.Fatalf("mosquitto_pub was admitted:\n%s", out)
			}
			if tc.reason != "" {
				// The broker counts after the client has seen the refusal.
				deadline := time.Now().Add(2 * time.Second)
				for e.metric(t, "fleetpki_mqtt_refused_total", tc.reason) != before+1 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if after := e.metric(t, "fleetpki_mqtt_refused_total", tc.reason); after != before+1 {
					t.Errorf("refusals for %s went %v → %v", tc.reason, before, after)
				}
			}
		})
	}
}

// Paho (a Go client nobody on the team wrote): publish and receive under
// the device's own subtree and the broadcast rule; other subscriptions are
// refused.
func TestPahoACL(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "meter-1")
	c, err := e.paho(t, d, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 4)
	if tok := c.Subscribe("devices/meter-1/#", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe own subtree: %v", tok.Error())
	}
	for _, filter := range []string{"devices/+/#", "devices/meter-2/#", "#", "$SYS/#"} {
		tok := c.Subscribe(filter, 1, nil)
		tok.WaitTimeout(5 * time.Second)
		st := tok.(*paho.SubscribeToken)
		if code := st.Result()[filter]; code != 0x80 {
			t.Errorf("subscribe %q: granted code %#x, want 0x80 (refused)", filter, code)
		}
	}
	if tok := c.Subscribe("fleet/broadcast/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.(*paho.SubscribeToken).Result()["fleet/broadcast/#"] == 0x80 {
		t.Error("subscribe to the broadcast rule was refused")
	}
	if tok := c.Publish("devices/meter-1/temp", 1, false, "21.5"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case topic := <-got:
		if topic != "devices/meter-1/temp" {
			t.Fatalf("received %q", topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("own message not received")
	}
}

// A subscribed device is disconnected within a second of its revocation and
// cannot reconnect.
func TestLiveRevocation(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "valve-9")
	lost := make(chan time.Time, 1)
	c, err := e.paho(t, d, "", func() { lost <- time.Now() })
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Subscribe("devices/valve-9/cmd", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	start := time.Now()
	if _, err := e.ca.Revoke(t.Context(), d.serial, pki.ReasonKeyCompromise, pki.Actor{Name: "test"}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-lost:
		delay := at.Sub(start)
		t.Logf("disconnected %v after the revocation", delay)
		if delay > time.Second {
			t.Fatalf("disconnect took %v, want < 1 s", delay)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the revoked device is still connected after 2 s")
	}
	if _, err := e.paho(t, d, "", nil); err == nil {
		t.Fatal("the revoked device reconnected")
	}
	if n := e.metric(t, "fleetpki_mqtt_revoked_disconnects_total"); n != 1 {
		t.Errorf("revoked disconnects = %v, want 1", n)
	}
}

// A connection that never finishes its handshake is closed at the deadline.
func TestHandshakeDeadline(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data from a connection that sent nothing")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("idle connection held for %v", d)
	}
}

// A failing checker refuses (fail closed).
type failingChecker struct{}

func (failingChecker) Revoked(context.Context, *x509.Certificate, *x509.Certificate) (bool, error) {
	return false, fmt.Errorf("responder unreachable")
}

func TestCheckFailureRefuses(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.Checker = failingChecker{} })
	d := e.device(t, "pump-1")
	if _, err := e.paho(t, d, "", nil); err == nil {
		t.Fatal("admitted although the status could not be checked")
	}
	waitFor(t, func() bool { return e.metric(t, "fleetpki_mqtt_refused_total", "check_failed") >= 1 })
	if n := e.metric(t, "fleetpki_mqtt_refused_total", "check_failed"); n != 1 {
		t.Errorf("check_failed refusals = %v, want 1", n)
	}
}

// Without revocation events (as for a revocation the broker never heard
// of), the checker alone refuses a revoked certificate.
func TestCheckerRefusesRevoked(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.Revocations = nil })
	d := e.device(t, "pump-2")
	if _, err := e.ca.Revoke(t.Context(), d.serial, pki.ReasonKeyCompromise, pki.Actor{Name: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.paho(t, d, "", nil); err == nil {
		t.Fatal("a revoked certificate was admitted")
	}
	waitFor(t, func() bool { return e.metric(t, "fleetpki_mqtt_refused_total", "revoked") >= 1 })
	if n := e.metric(t, "fleetpki_mqtt_refused_total", "revoked"); n != 1 {
		t.Errorf("revoked refusals = %v, want 1", n)
	}
}

func (e *env) expiredDevice(t *testing.T, id string) device {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big(t), NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	tmpl.Subject.CommonName = id
	der, err := x509.CreateCertificate(rand.Reader, tmpl, e.h.Intermediate(), key.Public(), e.h.Signer())
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return saveDevice(t, e.dir, id, key, cert)
}

func foreignDevice(t *testing.T, h *ca.Hierarchy, dir, id string) device {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big(t), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	tmpl.Subject.CommonName = id
	der, err := x509.CreateCertificate(rand.Reader, tmpl, h.Intermediate(), key.Public(), h.Signer())
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return saveDevice(t, dir, id, key, cert)
}

// metric returns the value of the registered metric with that name (and label value).
func (e *env) metric(t *testing.T, name string, label ...string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(label) == 0 || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label[0]) {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, label)
	return 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func big(t *testing.T) *stdbig.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(stdbig.Int).Lsh(stdbig.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A hint (from an unauthenticated event stream) ends a session only when the
// checker confirms the revocation: a forged hint changes nothing.
func TestHintsAreConfirmed(t *testing.T) {
	hints := make(chan pki.Serial, 4)
	e := newEnv(t, func(c *broker.Config) { c.Revocations, c.Hints = nil, hints })
	d := e.device(t, "door-1")
	lost := make(chan time.Time, 1)
	if _, err := e.paho(t, d, "", func() { lost <- time.Now() }); err != nil {
		t.Fatal(err)
	}
	hints <- d.serial // forged: the certificate is fine
	select {
	case <-lost:
		t.Fatal("a forged hint ended a valid session")
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := e.ca.Revoke(t.Context(), d.serial, pki.ReasonKeyCompromise, pki.Actor{Name: "test"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	hints <- d.serial
	select {
	case at := <-lost:
		t.Logf("confirmed hint ended the session in %v", at.Sub(start))
	case <-time.After(3 * time.Second):
		t.Fatal("a confirmed hint did not end the session")
	}
}

// Past MaxClients sessions, a CONNECT is refused.
func TestMaxClients(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.MaxClients = 1 })
	if _, err := e.paho(t, e.device(t, "m-1"), "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.paho(t, e.device(t, "m-2"), "", nil); err == nil {
		t.Fatal("a second session was admitted past MaxClients 1")
	}
}
