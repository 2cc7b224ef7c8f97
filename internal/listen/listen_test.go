package listen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// flaky is a listener whose Accept fails with errs first, then accepts
// from the real listener underneath.
type flaky struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (f *flaky) Accept() (net.Conn, error) {
	f.mu.Lock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

func tcp(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// Descriptor exhaustion is survived: the errors are counted and retried,
// and the next connection is accepted; the listener stays up.
func TestAcceptErrorsAreRetried(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	inner := &flaky{Listener: tcp(t), errs: []error{acceptErr(syscall.EMFILE), acceptErr(syscall.ENFILE), acceptErr(syscall.ECONNABORTED)}}
	l := New(inner, Config{Name: "test", Metrics: m})
	go func() {
		if c, err := net.Dial("tcp", inner.Addr().String()); err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept after transient errors: %v", err)
	}
	c.Close()
	if got := testutil.ToFloat64(m.acceptErrors.WithLabelValues("test")); got != 3 {
		t.Errorf("accept errors counted = %v, want 3", got)
	}
	if l.Err() != nil || testutil.ToFloat64(m.up.WithLabelValues("test")) != 1 {
		t.Errorf("the listener reports itself gone after transient errors: %v", l.Err())
	}
}

// A listener closed underneath (not by Close) is gone: Accept fails and
// Err says why, so readiness can fail.
func TestGoneListenerReports(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	inner := tcp(t)
	l := New(inner, Config{Name: "gone", Metrics: m})
	inner.Close()
	if _, err := l.Accept(); err == nil {
		t.Fatal("Accept on a dead listener succeeded")
	}
	if l.Err() == nil || testutil.ToFloat64(m.up.WithLabelValues("gone")) != 0 {
		t.Fatal("a dead listener does not report itself gone")
	}
	// Closing on purpose is not "gone".
	l2 := New(tcp(t), Config{Name: "closed"})
	l2.Close()
	if _, err := l2.Accept(); !errors.Is(err, net.ErrClosed) || l2.Err() != nil {
		t.Fatalf("after Close: Accept err %v, Err %v", err, l2.Err())
	}
}

func serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// Idle sockets from one address hold at most MaxHandshakesPerIP handshake
// slots; past that they are closed at once, and a real client from another
// address still gets through while they sit there.
func TestHandshakeBounds(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	inner := tcp(t)
	l := New(inner, Config{Name: "tls", TLS: serverTLS(t), MaxHandshakesPerIP: 4, MaxHandshakes: 8, HandshakeTimeout: 5 * time.Second, Metrics: m})
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}()
	var idle []net.Conn
	for range 10 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	deadline := time.Now().Add(3 * time.Second)
	for testutil.ToFloat64(m.refused.WithLabelValues("tls", "per_ip")) < 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(m.refused.WithLabelValues("tls", "per_ip")); got != 6 {
		t.Fatalf("connections closed for the per-address bound = %v, want 6", got)
	}
	if got := testutil.ToFloat64(m.handshakes.WithLabelValues("tls")); got != 4 {
		t.Fatalf("handshakes in progress = %v, want 4", got)
	}
	// A client from 127.0.0.2 completes its handshake meanwhile.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 3 * time.Second}
	c, err := tls.DialWithDialer(&d, "tcp", inner.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("a client from another address during the flood: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v", buf, err)
	}
	c.Close()
}
