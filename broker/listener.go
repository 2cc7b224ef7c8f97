package broker

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"log/slog"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// tlsListener accepts TCP connections and completes each TLS handshake in
// the connection's own goroutine under a deadline that also covers the
// CONNECT packet: mochi sets none before CONNECT, so without it an idle
// connection would hold a goroutine forever.
type tlsListener struct {
	net.Listener
	config  *tls.Config
	timeout time.Duration
	refused func(net.Addr, error)
}

// handshake returns the TLS connection with the deadline still set; mochi
// replaces it with the keep-alive deadline once CONNECT is read.
func (l *tlsListener) handshake(raw net.Conn) (*tls.Conn, error) {
	_ = raw.SetDeadline(time.Now().Add(l.timeout))
	c := tls.Server(raw, l.config)
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// mochiListener adapts tlsListener to mochi's Listener interface.
type mochiListener struct {
	id  string
	ln  *tlsListener
	log *slog.Logger

	end  atomic.Bool
	once sync.Once
}

func newMochiListener(id string, ln *tlsListener) *mochiListener {
	return &mochiListener{id: id, ln: ln}
}

func (l *mochiListener) ID() string                  { return l.id }
func (l *mochiListener) Address() string             { return l.ln.Addr().String() }
func (l *mochiListener) Protocol() string            { return "tls" }
func (l *mochiListener) Init(log *slog.Logger) error { l.log = log; return nil }

// Serve accepts until Close; each connection is handshaken and handed to
// mochi in its own goroutine, so a slow client or a slow revocation check
// never holds up the others.
func (l *mochiListener) Serve(establish listeners.EstablishFn) {
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if l.end.Load() {
				return
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		go func() {
			c, err := l.ln.handshake(raw)
			if err != nil {
				l.ln.refused(raw.RemoteAddr(), err)
				return
			}
			if err := establish(l.id, c); err != nil && l.log != nil {
				l.log.Debug("MQTT connection ended", "remote", raw.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// Close stops accepting and closes the listener's clients.
func (l *mochiListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		l.end.Store(true)
		closeClients(l.id)
		_ = l.ln.Close()
	})
}
