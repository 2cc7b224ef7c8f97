// Package listen guards fleetpki's TCP listeners against what a hostile or
// unlucky network does to them: an accept error (descriptors exhausted, a
// connection reset before accept) is retried with a back-off, logged and
// counted, never fatal; TLS handshakes run in their own goroutines under a
// deadline, with a bound on how many are in progress at once and per source
// address, so half-open sockets cannot take every descriptor; and a listener
// that is really gone says so (Err), so that readiness can fail.
//
// Policy: Accept returns only when it has a connection for the caller or
// the listener is closed or gone; it never returns a transient error, which
// would end net/http's or mochi's accept loop.
package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Listener.
type Config struct {
	// Name labels the metrics and logs: http, https, mqtt, ocsp, metrics.
	Name string
	// TLS, when set, makes Accept return connections whose TLS handshake
	// has completed (*tls.Conn); failed handshakes never reach the caller.
	TLS *tls.Config
	// HandshakeTimeout bounds a TLS handshake (default 10 s).
	HandshakeTimeout time.Duration
	// KeepDeadline leaves the handshake deadline on the connection, so that
	// it also bounds the first packet (MQTT's CONNECT); otherwise it is cleared.
	KeepDeadline bool
	// MaxHandshakes bounds the TLS handshakes in progress (default 1,024);
	// past it, accepting waits, and new connections queue in the kernel.
	MaxHandshakes int
	// MaxHandshakesPerIP bounds the handshakes in progress from one source
	// address (default 64); past it, a new connection is closed at once.
	MaxHandshakesPerIP int
	// OnHandshakeError is told about each failed handshake (optional).
	OnHandshakeError func(remote net.Addr, err error)
	// Metrics counts accept errors and handshakes (optional).
	Metrics *Metrics
	Logger  *slog.Logger
}

// Metrics are the listeners' Prometheus metrics, shared by all listeners of
// a process.
type Metrics struct {
	acceptErrors *prometheus.CounterVec
	handshakes   *prometheus.GaugeVec
	refused      *prometheus.CounterVec
	up           *prometheus.GaugeVec
}

// NewMetrics registers the listener metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		acceptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetpki_listener_accept_errors_total",
			Help: "Errors accepting a connection (e.g. descriptors exhausted), by listener; each is retried after a pause."}, []string{"listener"}),
		handshakes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fleetpki_listener_handshakes_in_progress",
			Help: "TLS handshakes in progress, by listener."}, []string{"listener"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetpki_listener_refused_total",
			Help: "Connections closed before their handshake, by listener and reason (per_ip: too many handshakes from one address)."}, []string{"listener", "reason"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fleetpki_listener_up",
			Help: "1 while the listener accepts connections, 0 once it is gone."}, []string{"listener"}),
	}
	for _, c := range []prometheus.Collector{m.acceptErrors, m.handshakes, m.refused, m.up} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("listener metrics: %w", err)
		}
	}
	return m, nil
}

// Listener is a guarded net.Listener.
type Listener struct {
	inner net.Listener
	cfg   Config
	log   *slog.Logger

	closed    chan struct{}
	closeOnce sync.Once
	// gone holds the error that ended accepting for good (nil while up).
	gone atomic.Pointer[error]

	// TLS mode: handshaken connections, and the handshake bounds.
	ready   chan net.Conn
	failed  chan struct{} // closed when the accept loop ends on an error
	slots   chan struct{}
	startMu sync.Once
	ipMu    sync.Mutex
	perIP   map[string]int

	lastLog atomic.Int64 // unix nanoseconds of the last accept-error log line
}

// New wraps inner. Close closes inner.
func New(inner net.Listener, cfg Config) *Listener {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = 1024
	}
	if cfg.MaxHandshakesPerIP <= 0 {
		cfg.MaxHandshakesPerIP = 64
	}
	if cfg.Name == "" {
		cfg.Name = "listener"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Listener{inner: inner, cfg: cfg, log: cfg.Logger.With("listener", cfg.Name), closed: make(chan struct{})}
	if cfg.TLS != nil {
		l.ready = make(chan net.Conn)
		l.failed = make(chan struct{})
		l.slots = make(chan struct{}, cfg.MaxHandshakes)
		l.perIP = map[string]int{}
	}
	if m := cfg.Metrics; m != nil {
		m.up.WithLabelValues(cfg.Name).Set(1)
		m.acceptErrors.WithLabelValues(cfg.Name)
	}
	return l
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close stops accepting; connections already handed out stay open.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.closed)
		err = l.inner.Close()
	})
	return err
}

// Err returns nil while the listener accepts connections (or was closed on
// purpose), and the error that ended it when it is gone.
func (l *Listener) Err() error {
	if p := l.gone.Load(); p != nil {
		return *p
	}
	return nil
}

// Accept returns the next connection: a handshaken *tls.Conn in TLS mode.
func (l *Listener) Accept() (net.Conn, error) {
	if l.cfg.TLS == nil {
		return l.acceptRaw()
	}
	l.startMu.Do(func() { go l.tlsLoop() })
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.failed:
		return nil, l.Err()
	}
}

// Back-off after an accept error: net/http's pacing (5 ms, doubling, at most 1 s).
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// acceptRaw accepts from inner, pausing and retrying on transient errors.
func (l *Listener) acceptRaw() (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := l.inner.Accept()
		if err == nil {
			return c, nil
		}
		select {
		case <-l.closed:
			return nil, net.ErrClosed
		default:
		}
		if !transient(err) {
			l.gone.Store(&err)
			if m := l.cfg.Metrics; m != nil {
				m.up.WithLabelValues(l.cfg.Name).Set(0)
			}
			l.log.Error("listener stopped accepting connections", "addr", l.Addr().String(), "err", err)
			return nil, fmt.Errorf("listener %s: %w", l.cfg.Name, err)
		}
		if m := l.cfg.Metrics; m != nil {
			m.acceptErrors.WithLabelValues(l.cfg.Name).Inc()
		}
		wait = min(max(2*wait, minBackoff), maxBackoff)
		// One line a second at most: under descriptor exhaustion every
		// retry fails, and the log must not become the next problem.
		if now := time.Now().UnixNano(); now-l.lastLog.Load() >= int64(time.Second) {
			l.lastLog.Store(now)
			l.log.Warn("accepting a connection failed; retrying", "err", err, "retry_in", wait)
		}
		select {
		case <-l.closed:
			return nil, net.ErrClosed
		case <-time.After(wait):
		}
	}
}

// transient reports whether an accept error may go away by itself:
// descriptors or memory exhausted, a connection aborted before accept.
func transient(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// syscall.Errno says which errors are temporary (EMFILE, ENFILE,
	// ECONNABORTED, ECONNRESET, EAGAIN …); the method is deprecated as a
	// general test, but it is what accept errors are classed by.
	var tmp interface{ Temporary() bool }
	if errors.As(err, &tmp) && tmp.Temporary() {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) // other accept-time OS errors: retry rather than die
}

// tlsLoop accepts raw connections and handshakes each in its own goroutine,
// within the bounds; it ends when the listener closes or is gone.
func (l *Listener) tlsLoop() {
	for {
		raw, err := l.acceptRaw()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				close(l.failed)
			}
			return
		}
		ip := hostOf(raw.RemoteAddr())
		if !l.takeIP(ip) {
			_ = raw.Close()
			if m := l.cfg.Metrics; m != nil {
				m.refused.WithLabelValues(l.cfg.Name, "per_ip").Inc()
			}
			continue
		}
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			l.releaseIP(ip)
			_ = raw.Close()
			return
		}
		if m := l.cfg.Metrics; m != nil {
			m.handshakes.WithLabelValues(l.cfg.Name).Inc()
		}
		go l.handshake(raw, ip)
	}
}

func (l *Listener) handshake(raw net.Conn, ip string) {
	release := func() {
		<-l.slots
		l.releaseIP(ip)
		if m := l.cfg.Metrics; m != nil {
			m.handshakes.WithLabelValues(l.cfg.Name).Dec()
		}
	}
	_ = raw.SetDeadline(time.Now().Add(l.cfg.HandshakeTimeout))
	c := tls.Server(raw, l.cfg.TLS)
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.HandshakeTimeout)
	err := c.HandshakeContext(ctx)
	cancel()
	release()
	if err != nil {
		_ = c.Close()
		if l.cfg.OnHandshakeError != nil {
			l.cfg.OnHandshakeError(raw.RemoteAddr(), err)
		}
		return
	}
	if !l.cfg.KeepDeadline {
		_ = raw.SetDeadline(time.Time{})
	}
	select {
	case l.ready <- c:
	case <-l.closed:
		_ = c.Close()
	}
}

func (l *Listener) takeIP(ip string) bool {
	l.ipMu.Lock()
	defer l.ipMu.Unlock()
	if l.perIP[ip] >= l.cfg.MaxHandshakesPerIP {
		return false
	}
	l.perIP[ip]++
	return true
}

func (l *Listener) releaseIP(ip string) {
	l.ipMu.Lock()
	defer l.ipMu.Unlock()
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// Open listens on addr (TCP) and guards the listener; flag names the
// setting in errors ("--https-addr"). With cfg.TLS set, failed handshakes
// are logged at debug level unless cfg says otherwise.
func Open(addr, flag string, cfg Config) (*Listener, error) {
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", flag, addr, err)
	}
	if cfg.TLS != nil && cfg.OnHandshakeError == nil && cfg.Logger != nil {
		name, log := cfg.Name, cfg.Logger
		cfg.OnHandshakeError = func(remote net.Addr, err error) {
			log.Debug("TLS handshake failed", "listener", name, "remote", remote.String(), "err", err)
		}
	}
	return New(raw, cfg), nil
}
