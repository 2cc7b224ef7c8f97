package broker_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/broker"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/crl"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/sqlite"
)

// The benchmarks drive every broker with the same minimal MQTT 3.1.1 client
// (TLS handshake, CONNECT, CONNACK; PUBLISH QoS 0 with a PINGREQ fence), so
// the client's own cost is equal and small. Run them with `make bench-broker`.

type noChecks struct{}

func (noChecks) Revoked(context.Context, *x509.Certificate, *x509.Certificate) (bool, error) {
	return false, nil
}

// target is a broker under test: its address and client TLS configurations,
// one per device.
type target struct {
	addr    string
	clients []*tls.Config
	ids     []string
}

const benchDevices = 16

func fleetpkiTarget(b *testing.B, checks bool) target {
	e := newEnv(b, func(c *broker.Config) {
		if !checks {
			c.Checker = noChecks{}
		}
	})
	return e.target(b)
}

func (e *env) target(b testing.TB) target {
	roots := x509.NewCertPool()
	roots.AddCert(e.h.Root())
	t := target{addr: e.addr}
	for i := range benchDevices {
		d := e.device(b, fmt.Sprintf("bench-%d", i))
		t.clients = append(t.clients, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{d.cert}, MinVersion: tls.VersionTLS12, ServerName: "127.0.0.1",
			ClientSessionCache: nil}) // every connection makes a full handshake
		t.ids = append(t.ids, d.id)
	}
	return t
}

// mosquittoTarget starts Debian's Mosquitto with require_certificate and a
// CRL file from fleetpki, trusting the same CA.
func mosquittoTarget(b *testing.B) target {
	e := newEnv(b, nil)
	tg := e.target(b)
	dir := e.dir
	st, err := sqlite.Open(b.Context(), filepath.Join(dir, "crl.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	u, err := crl.New(crl.Config{Issuer: e.h.Intermediate(), Signer: e.h.Signer(), Store: st, URL: "http://127.0.0.1:8080/crl", NoDelta: true})
	if err != nil {
		b.Fatal(err)
	}
	c, err := u.RunOnce(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	crlFile := filepath.Join(dir, "crl.pem")
	_ = os.WriteFile(crlFile, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.DER}), 0o600)
	chain := e.writePEM(b, "chain.pem", e.h.Intermediate().Raw, e.h.Root().Raw)
	srvCert, err := e.ca.IssueServerCertificate(b.Context(), []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	certFile := e.writePEM(b, "mosq.crt", srvCert.Certificate[0])
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvCert.PrivateKey)
	if err != nil {
		b.Fatal(err)
	}
	keyFile := filepath.Join(dir, "mosq.key")
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(dir, "mosquitto.conf")
	_ = os.WriteFile(conf, []byte(fmt.Sprintf(`user root
log_dest stderr
log_type error
per_listener_settings true
listener %d 127.0.0.1
allow_anonymous true
cafile %s
certfile %s
keyfile %s
require_certificate true
crlfile %s
max_connections -1
set_tcp_nodelay true
`, port, chain, certFile, keyFile, crlFile)), 0o600)
	if _, err := exec.LookPath("mosquitto"); err != nil {
		b.Fatalf("mosquitto is required (Debian's mosquitto package): %v", err)
	}
	cmd := exec.Command("mosquitto", "-c", conf)
	var log bytes.Buffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	tg.addr = fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", tg.addr); err == nil {
			c.Close()
			break
		}
		if i > 100 {
			b.Fatalf("mosquitto did not start:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return tg
}

func targets(b *testing.B) []struct {
	name string
	make func(*testing.B) target
} {
	return []struct {
		name string
		make func(*testing.B) target
	}{
		{"fleetpki-checks", func(b *testing.B) target { return fleetpkiTarget(b, true) }},
		{"fleetpki-nochecks", func(b *testing.B) target { return fleetpkiTarget(b, false) }},
		{"mosquitto-crl", mosquittoTarget},
	}
}

// BenchmarkConnect: one op is a new TCP+TLS connection (full ECDSA P-256
// handshake with a client certificate), CONNECT and CONNACK, then close.
func BenchmarkConnect(b *testing.B) {
	for _, tg := range targets(b) {
		b.Run(tg.name, func(b *testing.B) {
			t := tg.make(b)
			var next atomic.Int64
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1)) % benchDevices
				for pb.Next() {
					c, err := mqttConnect(t.addr, t.clients[i], t.ids[i])
					if err != nil {
						b.Error(err)
						return
					}
					c.Close()
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "connects/s")
		})
	}
}

// BenchmarkPublish: one op is a 64-byte QoS 0 PUBLISH on one connection per
// goroutine; a PINGREQ after the batch waits for the broker to have read them all.
func BenchmarkPublish(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 64)
	for _, tg := range targets(b) {
		b.Run(tg.name, func(b *testing.B) {
			t := tg.make(b)
			c, err := mqttConnect(t.addr, t.clients[0], t.ids[0])
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			w := bufio.NewWriterSize(c, 64<<10)
			pkt := publishPacket("devices/"+t.ids[0]+"/bench", payload)
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			for b.Loop() {
				if _, err := w.Write(pkt); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := w.Write([]byte{0xc0, 0}); err != nil { // PINGREQ
				b.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			resp := make([]byte, 2)
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
			if _, err := io.ReadFull(c, resp); err != nil || resp[0] != 0xd0 {
				b.Fatalf("PINGRESP: %v %x", err, resp)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// mqttConnect opens a TLS connection and completes an MQTT 3.1.1 CONNECT.
func mqttConnect(addr string, cfg *tls.Config, clientID string) (net.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var p []byte
	p = append(p, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60) // protocol, level 4, clean session, keep-alive 60 s
	p = append(p, byte(len(clientID)>>8), byte(len(clientID)))
	p = append(p, clientID...)
	if _, err := c.Write(append([]byte{0x10, byte(len(p))}, p...)); err != nil {
		c.Close()
		return nil, fmt.Errorf("CONNECT: %w", err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		c.Close()
		return nil, fmt.Errorf("CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("CONNACK refused: % x", ack)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func publishPacket(topic string, payload []byte) []byte {
	n := 2 + len(topic) + len(payload)
	p := []byte{0x30}
	for { // remaining length, variable-length encoded
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		p = append(p, d)
		if n == 0 {
			break
		}
	}
	p = append(p, byte(len(topic)>>8), byte(len(topic)))
	p = append(p, topic...)
	return append(p, payload...)
}

// BenchmarkSessions holds FLEETPKI_BENCH_SESSIONS (default 10,000) TLS
// sessions on a broker running in a child process (so that neither side
// needs 20,000 descriptors) and reports the broker's resident memory.
func BenchmarkSessions(b *testing.B) {
	n := 10000
	if v := os.Getenv("FLEETPKI_BENCH_SESSIONS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	dir := b.TempDir()
	h, err := ca.Init(b.Context(), ca.InitOptions{DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBrokerChild$", "-test.v")
	cmd.Env = append(os.Environ(), "FLEETPKI_BROKER_CHILD="+dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	var addr string
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "BROKER "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		b.Fatal("the child broker did not start")
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "bench-device.crt"), filepath.Join(dir, "bench-device.key"))
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(h.Root())
	cfg := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ServerName: "127.0.0.1",
		ClientSessionCache: tls.NewLRUClientSessionCache(1)}
	before := rssMiB(b, cmd.Process.Pid)
	for b.Loop() {
		conns := make([]net.Conn, 0, n)
		start := time.Now()
		for i := range n {
			// AnyClientID is on in the child: one certificate, n sessions.
			c, err := mqttConnect(addr, cfg, "s"+strconv.Itoa(i))
			if err != nil {
				b.Fatalf("session %d: %v", i, err)
			}
			conns = append(conns, c)
		}
		rss := rssMiB(b, cmd.Process.Pid)
		b.ReportMetric(float64(n), "sessions")
		b.ReportMetric(rss, "broker-RSS-MiB")
		b.ReportMetric(rss-before, "RSS-growth-MiB")
		b.Logf("%d sessions in %v; broker RSS %.0f MiB (%.0f MiB before)", n, time.Since(start), rss, before)
		for _, c := range conns {
			c.Close()
		}
	}
}

func rssMiB(b *testing.B, pid int) float64 {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(s), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// TestBrokerChild is BenchmarkSessions' broker process; it does nothing in
// a normal test run.
func TestBrokerChild(t *testing.T) {
	dir := os.Getenv("FLEETPKI_BROKER_CHILD")
	if dir == "" {
		t.Skip("only run as BenchmarkSessions' child process")
	}
	h, err := ca.LoadHierarchy(t.Context(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := ca.New(t.Context(), ca.Config{Hierarchy: h, Store: st, PublicURL: "http://127.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	// The parent's clients connect with this device's certificate.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	iss, err := c.Issue(t.Context(), ca.IssueRequest{DeviceID: "bench-device", CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	saveDevice(t, dir, "bench-device", key, iss.Certificate)
	srvCert, err := c.IssueServerCertificate(t.Context(), []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(h.Root())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	br, err := broker.New(broker.Config{Listener: ln, Roots: roots, Issuer: h.Intermediate(),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return srvCert, nil },
		Checker:        storeStatus{st}, AnyClientID: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	fmt.Printf("BROKER %s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
