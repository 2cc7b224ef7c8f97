// Package broker is fleetpki's MQTT broker (mochi-mqtt v2): devices connect
// over TLS with their fleetpki client certificates, the device id comes from
// the certificate, and a certificate's revocation refuses its connections and
// ends its live sessions within a second. The broker knows nothing of the
// store: it asks a RevocationChecker and listens to revocation events.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetpki/fleetpki/internal/listen"
	"github.com/fleetpki/fleetpki/pki"
)

// deviceURIPrefix is the URI SAN fleetpki puts in device certificates.
const deviceURIPrefix = "urn:fleetpki:device:"

// Config configures a Broker.
type Config struct {
	// Addr is the TCP address of the MQTT-over-TLS listener.
	Addr string
	// Listener, when set, is used instead of listening on Addr (tests).
	Listener net.Listener
	// Roots verifies client certificates; Issuer is the fleetpki issuing CA
	// every client certificate must be issued by directly.
	Roots  *x509.CertPool
	Issuer *x509.Certificate
	// GetCertificate supplies the broker's own server certificate.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Checker is asked about every connecting certificate (required).
	Checker RevocationChecker
	// CheckTimeout bounds one revocation check (default 2 s).
	CheckTimeout time.Duration
	// Revocations, when set, carries revoked serials: their live sessions
	// are disconnected at once and their reconnects refused.
	Revocations <-chan pki.RevocationEvent
	// Hints carries serials said to be revoked by an unauthenticated source
	// (a remote event stream): their live sessions are re-checked with the
	// Checker at once, bypassing its cache if it can forget, and ended only
	// if the Checker confirms.
	Hints <-chan pki.Serial
	// RecheckInterval re-checks live sessions with the Checker (and drops
	// those whose certificate expired); 0 disables it (bundled mode, where
	// Revocations is complete).
	RecheckInterval time.Duration
	// Rules is the ACL (default DefaultRules).
	Rules []Rule
	// AnyClientID lets a device use a client id other than its device id.
	// Off by default: with it, one device could take over another's session.
	AnyClientID bool
	// MaxClients bounds the connected sessions (default 100,000); past it a
	// CONNECT is answered "server unavailable".
	MaxClients int64
	// HandshakeTimeout bounds the TLS handshake and the CONNECT packet
	// together (default 10 s), so idle connections cannot pile up.
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds the TLS handshakes in progress (default 1,024),
	// and MaxHandshakesPerIP those from one address (default 64), so that
	// half-open sockets cannot take every descriptor.
	MaxHandshakes      int
	MaxHandshakesPerIP int
	// MaxRetained and MaxRetainedBytes bound the retained messages one
	// device may keep on the broker (defaults 16 messages, 64 KiB); a
	// retained PUBLISH past them is refused, and so is a CONNECT whose
	// retained will alone is larger than MaxRetainedBytes.
	MaxRetained      int
	MaxRetainedBytes int
	// Listeners receives the listener metrics (accept errors, handshakes);
	// optional, shared with the process's other listeners.
	Listeners  *listen.Metrics
	Registerer prometheus.Registerer
	Clock      pki.Clock
	Logger     *slog.Logger
}

// Broker is a running MQTT broker.
type Broker struct {
	cfg      Config
	log      *slog.Logger
	server   *mqtt.Server
	ln       *listen.Listener
	metrics  *metrics
	retained *retainedQuota

	mu       sync.Mutex
	sessions map[pki.Serial]map[*mqtt.Client]struct{}
	// revoked remembers serials announced by Revocations, so that a
	// connection checked just before the announcement cannot slip in.
	revoked map[pki.Serial]time.Time
}

// New validates cfg and prepares the broker; Run starts it.
func New(cfg Config) (*Broker, error) {
	if cfg.Roots == nil || cfg.Issuer == nil || cfg.GetCertificate == nil || cfg.Checker == nil {
		return nil, errors.New("broker: Roots, Issuer, GetCertificate and Checker are required")
	}
	if cfg.Addr == "" && cfg.Listener == nil {
		return nil, errors.New("broker: an address is required")
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.Rules == nil {
		cfg.Rules = DefaultRules()
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 100_000
	}
	if cfg.MaxRetained <= 0 {
		cfg.MaxRetained = 16
	}
	if cfg.MaxRetainedBytes <= 0 {
		cfg.MaxRetainedBytes = 64 << 10
	}
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	b := &Broker{cfg: cfg, log: cfg.Logger, retained: newRetainedQuota(cfg.MaxRetained, cfg.MaxRetainedBytes),
		sessions: map[pki.Serial]map[*mqtt.Client]struct{}{}, revoked: map[pki.Serial]time.Time{}}
	m, err := newMetrics(cfg.Registerer, b.liveSessions)
	if err != nil {
		return nil, err
	}
	b.metrics = m
	return b, nil
}

// Addr returns the listener's address once Run has started listening.
func (b *Broker) Addr() net.Addr {
	if b.ln == nil {
		return nil
	}
	return b.ln.Addr()
}

// Listen opens the listener; Run calls it when the caller has not.
func (b *Broker) Listen() error {
	if b.ln != nil {
		return nil
	}
	inner := b.cfg.Listener
	if inner == nil {
		var err error
		if inner, err = net.Listen("tcp", b.cfg.Addr); err != nil {
			return fmt.Errorf("--mqtt-addr %q: %w", b.cfg.Addr, err)
		}
	}
	b.ln = listen.New(inner, listen.Config{Name: "mqtt", TLS: b.tlsConfig(), HandshakeTimeout: b.cfg.HandshakeTimeout,
		KeepDeadline: true, MaxHandshakes: b.cfg.MaxHandshakes, MaxHandshakesPerIP: b.cfg.MaxHandshakesPerIP,
		OnHandshakeError: b.refusedHandshake, Metrics: b.cfg.Listeners, Logger: b.log})
	return nil
}

// Err is nil while the broker's listener accepts connections, and the
// reason once it is gone for good (readiness reports it).
func (b *Broker) Err() error {
	if b.ln == nil {
		return nil
	}
	return b.ln.Err()
}

// tlsConfig requires a client certificate and does all verification in
// VerifyConnection, which (unlike VerifyPeerCertificate) also runs on
// resumed sessions, so a revoked device cannot ride an old session ticket.
func (b *Broker) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		GetCertificate:   b.cfg.GetCertificate,
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: b.verifyConnection,
	}
}

// Run serves MQTT until ctx ends.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.Listen(); err != nil {
		return err
	}
	b.server = mqtt.New(&mqtt.Options{
		InlineClient: false,
		Logger:       b.log.With("component", "mqtt"),
		Capabilities: capabilities(b.cfg.MaxClients),
	})
	if err := b.server.AddHook(&hook{b: b}, nil); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	if err := b.server.AddListener(newMochiListener("fleetpki-tls", b.ln)); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	if err := b.server.Serve(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.log.DebugContext(ctx, "MQTT broker serving", "addr", b.ln.Addr().String())
	var wg sync.WaitGroup
	if b.cfg.Revocations != nil {
		wg.Go(func() { b.followRevocations(ctx) })
	}
	if b.cfg.RecheckInterval > 0 {
		wg.Go(func() { b.recheckLoop(ctx) })
	}
	if b.cfg.Hints != nil {
		wg.Go(func() { b.followHints(ctx) })
	}
	<-ctx.Done()
	err := b.server.Close()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("broker: close: %w", err)
	}
	return nil
}

// capabilities bound what one client, and all of them, can make the broker hold.
func capabilities(maxClients int64) *mqtt.Capabilities {
	c := mqtt.NewDefaultServerCapabilities()
	c.MaximumClients = maxClients
	c.MaximumPacketSize = 256 << 10
	c.MaximumSessionExpiryInterval = 24 * 60 * 60
	c.MaximumClientWritesPending = 1024
	return c
}

// refusal is a connection refused for a reason the metrics count.
type refusal struct {
	reason string
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func refuse(reason string, format string, args ...any) error {
	return &refusal{reason: reason, err: fmt.Errorf(format, args...)}
}

// verifyConnection checks the client's chain up to the issuing CA, its
// device identity and its revocation status.
func (b *Broker) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return refuse("no_certificate", "no client certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	inter.AddCert(b.cfg.Issuer)
	now := b.cfg.Clock.Now()
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: b.cfg.Roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return refuse("expired", "client certificate %s: %w", leaf.Subject, err)
		}
		return refuse("unknown_ca", "client certificate %s: %w", leaf.Subject, err)
	}
	issued := false
	for _, ch := range chains {
		if len(ch) > 1 && ch[1].Equal(b.cfg.Issuer) {
			issued = true
		}
	}
	if !issued {
		return refuse("unknown_ca", "client certificate %s is not issued by the fleetpki issuing CA", leaf.Subject)
	}
	if _, err := DeviceID(leaf); err != nil {
		return refuse("identity", "%w", err)
	}
	serial := pki.NewSerial(leaf.SerialNumber)
	if b.isRevoked(serial) {
		return refuse("revoked", "certificate %s is revoked", serial)
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.CheckTimeout)
	defer cancel()
	start := time.Now()
	revoked, err := b.cfg.Checker.Revoked(ctx, leaf, b.cfg.Issuer)
	b.metrics.checkSeconds.Observe(time.Since(start).Seconds())
	switch {
	case err != nil:
		return refuse("check_failed", "revocation status of %s: %w", serial, err)
	case revoked:
		return refuse("revoked", "certificate %s is revoked", serial)
	}
	return nil
}

// refusedHandshake counts and logs a failed TLS handshake.
func (b *Broker) refusedHandshake(remote net.Addr, err error) {
	reason := "handshake"
	var r *refusal
	if errors.As(err, &r) {
		reason = r.reason
	}
	b.metrics.refused.WithLabelValues(reason).Inc()
	b.log.Info("MQTT connection refused", "remote", remote.String(), "reason", reason, "err", err)
}

// DeviceID returns the device id a certificate names: its
// urn:fleetpki:device: URI SAN, which must agree with the CN when both are
// there; else the CN. Ids that would break topic filters are refused, and
// so are service certificates (a broker's or server's identity, whose CN
// is a host name): a service is not a device and gets no device's topics.
func DeviceID(c *x509.Certificate) (string, error) {
	if pki.IsServiceCertificate(c) {
		return "", fmt.Errorf("certificate is a service's (extended key usage serverAuth), not a device's")
	}
	id := ""
	for _, u := range c.URIs {
		if s := u.String(); strings.HasPrefix(s, deviceURIPrefix) {
			if id != "" {
				return "", fmt.Errorf("certificate names more than one device")
			}
			id = strings.TrimPrefix(s, deviceURIPrefix)
		}
	}
	cn := c.Subject.CommonName
	switch {
	case id == "":
		id = cn
	case cn != "" && cn != id:
		return "", fmt.Errorf("certificate CN %q and device URI %q disagree", cn, id)
	}
	if id == "" || strings.ContainsAny(id, "/+#\x00") || strings.HasPrefix(id, "$") {
		return "", fmt.Errorf("certificate names no usable device id (%q)", id)
	}
	return id, nil
}

func (b *Broker) liveSessions() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, m := range b.sessions {
		n += len(m)
	}
	return float64(n)
}

func (b *Broker) isRevoked(s pki.Serial) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.revoked[s]
	return ok
}

// register records a live session for its certificate; it fails when the
// certificate was revoked meanwhile, so no session outlives its revocation.
func (b *Broker) register(s pki.Serial, cl *mqtt.Client) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.revoked[s]; ok {
		return false
	}
	m := b.sessions[s]
	if m == nil {
		m = map[*mqtt.Client]struct{}{}
		b.sessions[s] = m
	}
	m[cl] = struct{}{}
	return true
}

func (b *Broker) unregister(s pki.Serial, cl *mqtt.Client) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m := b.sessions[s]; m != nil {
		delete(m, cl)
		if len(m) == 0 {
			delete(b.sessions, s)
		}
	}
}

// revokedSerial marks s revoked and disconnects its live sessions.
func (b *Broker) revokedSerial(s pki.Serial, at time.Time) int {
	b.mu.Lock()
	b.revoked[s] = at
	var victims []*mqtt.Client
	for cl := range b.sessions[s] {
		victims = append(victims, cl)
	}
	delete(b.sessions, s)
	b.mu.Unlock()
	for _, cl := range victims {
		b.metrics.revokedDisconnects.Inc()
		endSession(b.server, cl)
		b.metrics.eventToDisconnect.Observe(time.Since(at).Seconds())
		b.log.Info("MQTT session ended: certificate revoked", "client", cl.ID, "serial", s)
	}
	return len(victims)
}

// revokedMemory bounds how long announced revocations are remembered; by
// then every checker answers revoked on its own.
const revokedMemory = 10 * time.Minute

func (b *Broker) followRevocations(ctx context.Context) {
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-b.cfg.Revocations:
			if !ok {
				return
			}
			b.revokedSerial(ev.Serial, time.Now())
		case <-sweep.C:
			b.mu.Lock()
			for s, at := range b.revoked {
				if time.Since(at) > revokedMemory {
					delete(b.revoked, s)
				}
			}
			b.mu.Unlock()
		}
	}
}

// recheckLoop re-asks the checker about every live session's certificate;
// sessions found revoked or expired are ended. A failed check keeps the
// session: fail-closed governs admission, and a responder outage should not
// drop the whole fleet at once.
func (b *Broker) recheckLoop(ctx context.Context) {
	t := time.NewTicker(b.cfg.RecheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.mu.Lock()
		live := map[*mqtt.Client]pki.Serial{}
		for s, m := range b.sessions {
			for cl := range m {
				live[cl] = s
			}
		}
		b.mu.Unlock()
		for cl, s := range live {
			leaf := peerLeaf(cl)
			if leaf == nil {
				continue
			}
			if !b.cfg.Clock.Now().Before(leaf.NotAfter) {
				b.unregister(s, cl)
				endSession(b.server, cl)
				b.log.InfoContext(ctx, "MQTT session ended: certificate expired", "client", cl.ID, "serial", s)
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, b.cfg.CheckTimeout)
			revoked, err := b.cfg.Checker.Revoked(cctx, leaf, b.cfg.Issuer)
			cancel()
			switch {
			case err != nil:
				b.log.WarnContext(ctx, "re-check of a live session failed; keeping it", "client", cl.ID, "serial", s, "err", err)
			case revoked:
				b.revokedSerial(s, time.Now())
			}
		}
	}
}

// forgetter is a RevocationChecker with a cache it can drop for one certificate.
type forgetter interface {
	Forget(leaf, issuer *x509.Certificate)
}

// hintRetries are the pauses before each confirmation attempt of a hint:
// the responder may hear of the revocation a moment after the stream did.
var hintRetries = []time.Duration{0, 200 * time.Millisecond, time.Second, 3 * time.Second}

// followHints re-checks the live sessions of hinted serials at once, a few
// hints at a time.
func (b *Broker) followHints(ctx context.Context) {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case s, ok := <-b.cfg.Hints:
			if !ok {
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				b.confirmHint(ctx, s, time.Now())
			})
		}
	}
}

// confirmHint asks the checker (past its cache) about a hinted serial's
// live sessions and ends them when it confirms the revocation.
func (b *Broker) confirmHint(ctx context.Context, s pki.Serial, heard time.Time) {
	for _, pause := range hintRetries {
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		b.mu.Lock()
		var leaf *x509.Certificate
		for cl := range b.sessions[s] {
			leaf = peerLeaf(cl)
			break
		}
		b.mu.Unlock()
		if leaf == nil {
			return // no live session (any more)
		}
		if f, ok := b.cfg.Checker.(forgetter); ok {
			f.Forget(leaf, b.cfg.Issuer)
		}
		cctx, cancel := context.WithTimeout(ctx, b.cfg.CheckTimeout)
		revoked, err := b.cfg.Checker.Revoked(cctx, leaf, b.cfg.Issuer)
		cancel()
		if err == nil && revoked {
			b.revokedSerial(s, heard)
			return
		}
		if err != nil {
			b.log.WarnContext(ctx, "a revocation hint could not be confirmed yet", "serial", s, "err", err)
		}
	}
	b.log.InfoContext(ctx, "a revocation hint was not confirmed; the next re-check decides", "serial", s)
}

// endSession ends a session whose certificate is no longer good (revoked,
// expired) without its will: a device cut off for a leaked key must not get
// a last word into anyone's topics. mochi publishes the will from
// Properties.Will whenever its flag is set, so the flag is cleared first.
func endSession(s *mqtt.Server, cl *mqtt.Client) {
	atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	_ = s.DisconnectClient(cl, packets.ErrNotAuthorized)
}

// peerLeaf returns the client certificate of a connected client.
func peerLeaf(cl *mqtt.Client) *x509.Certificate {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return nil
	}
	pc := tc.ConnectionState().PeerCertificates
	if len(pc) == 0 {
		return nil
	}
	return pc[0]
}
