package broker

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/fleetpki/fleetpki/internal/listen"
)

// mochiListener adapts a guarded TLS listener (package listen: handshakes in
// their own goroutines under a deadline that also covers CONNECT, bounded in
// number, accept errors retried) to mochi's Listener interface. mochi sets
// no deadline before CONNECT, so without it an idle connection would hold a
// goroutine forever.
type mochiListener struct {
	id  string
	ln  *listen.Listener
	log *slog.Logger

	end  atomic.Bool
	once sync.Once
}

func newMochiListener(id string, ln *listen.Listener) *mochiListener {
	return &mochiListener{id: id, ln: ln}
}

func (l *mochiListener) ID() string                  { return l.id }
func (l *mochiListener) Address() string             { return l.ln.Addr().String() }
func (l *mochiListener) Protocol() string            { return "tls" }
func (l *mochiListener) Init(log *slog.Logger) error { l.log = log; return nil }

// Serve hands each handshaken connection to mochi in its own goroutine.
// Accept returns an error only when the listener is closed or gone for
// good (it retries transient errors itself); a gone listener is reported
// by Broker.Err, which readiness checks.
func (l *mochiListener) Serve(establish listeners.EstablishFn) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			if err := establish(l.id, c); err != nil && l.log != nil {
				l.log.Debug("MQTT connection ended", "remote", c.RemoteAddr().String(), "err", err)
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
