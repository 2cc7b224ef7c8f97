package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fleetpki/fleetpki/ca"
)

// config is the whole configuration of the binary. Every setting is a flag of
// every subcommand and, under FLEETPKI_<FLAG_IN_UPPER_SNAKE>, an environment
// variable; a flag given on the command line wins over the environment,
// which wins over the default in settings.
type config struct {
	DataDir         string
	DatabaseURL     string
	HTTPAddr        string
	HTTPSAddr       string
	MQTTAddr        string
	PublicURL       string
	KeyAlgorithm    string
	KeyPasswordFile string
	LogLevel        string
	LogFormat       string
	TLSSAN          string
	TLSCert         string
	TLSKey          string
	EnrollRate      string
	EnrollBurst     string
	PprofAddr       string
	MQTTACLFile     string
	MQTTAnyClientID string
	MQTTMaxClients  string
	MQTTMaxRetained string
	MQTTMaxRetBytes string
	OCSPURL         string
	CAFile          string
	CRLURL          string
	OCSPMaxAge      string
	RecheckInterval string
	FailOpenGrace   string

	// envKeyPassword is FLEETPKI_KEY_PASSWORD, read when the flags are registered.
	envKeyPassword string
	// keyPassword encrypts and decrypts the CA key files; set by Validate.
	keyPassword []byte
	// level is LogLevel parsed; set by Validate.
	level slog.Level
	// enrollRate and enrollBurst are EnrollRate and EnrollBurst parsed; set by Validate.
	enrollRate  float64
	enrollBurst int
}

// envKeyPassword names the variable that carries the CA key password; it has
// no flag because a password on a command line is visible to every local user.
const envKeyPassword = "FLEETPKI_KEY_PASSWORD"

// setting is one configuration entry: its flag name, default and help.
type setting struct {
	name  string
	def   string
	usage string
	dst   *string
}

// settings lists every setting with its default: the one place they live.
func (c *config) settings() []setting {
	return []setting{
		{"data-dir", "./fleetpki-data", "directory for CA keys, the embedded database and generated secrets", &c.DataDir},
		{"database-url", "", "postgres://… URL; empty uses SQLite in the data directory", &c.DatabaseURL},
		{"http-addr", "127.0.0.1:8080", "plain HTTP listener: OCSP, CRL, CA certificates, health, metrics", &c.HTTPAddr},
		{"https-addr", "127.0.0.1:8443", "TLS listener: REST API (and later the admin UI)", &c.HTTPSAddr},
		{"mqtt-addr", "127.0.0.1:8883", "MQTT over TLS listener (client certificates required); empty disables the broker", &c.MQTTAddr},
		{"mqtt-acl-file", "", "MQTT ACL rules (lines \"pub|sub|pubsub FILTER\" with {device_id}); empty allows each device devices/{device_id}/# only", &c.MQTTACLFile},
		{"mqtt-max-clients", "100000", "most MQTT sessions at once; past it a CONNECT is refused", &c.MQTTMaxClients},
		{"mqtt-max-retained", "16", "most retained messages one device may keep on the broker", &c.MQTTMaxRetained},
		{"mqtt-max-retained-bytes", "65536", "most bytes of retained messages one device may keep on the broker", &c.MQTTMaxRetBytes},
		{"mqtt-any-client-id", "false", "let MQTT clients use a client id other than their certificate's device id", &c.MQTTAnyClientID},
		{"ocsp-url", "", "broker: OCSP responder to ask (default: each certificate's AIA OCSP URL)", &c.OCSPURL},
		{"ca-file", "", "broker, crl export: PEM chain of the fleetpki issuing CA, intermediate first, root last (crl export defaults to the data directory's)", &c.CAFile},
		{"crl-url", "", "broker: CRL to fall back on when OCSP gives no answer", &c.CRLURL},
		{"ocsp-max-age", "5m", "broker: longest time a good OCSP answer is trusted, even if its nextUpdate is later", &c.OCSPMaxAge},
		{"recheck-interval", "60s", "broker: how often live sessions' certificates are checked again", &c.RecheckInterval},
		{"fail-open-grace", "0", "broker: when no fresh OCSP answer can be had, admit devices whose last good answer is at most this old (0: fail closed)", &c.FailOpenGrace},
		{"public-url", "http://127.0.0.1:8080", "base URL of the HTTP listener, written into certificates (AIA, CDP)", &c.PublicURL},
		{"key-algorithm", string(ca.ECDSAP256), "CA key algorithm on creation: ecdsa-p256, ecdsa-p384 or rsa-3072", &c.KeyAlgorithm},
		{"key-password-file", "", "file holding the password that encrypts the CA keys (or set " + envKeyPassword + ")", &c.KeyPasswordFile},
		{"tls-san", "", "extra comma-separated DNS names or IPs for the HTTPS certificate the CA issues itself", &c.TLSSAN},
		{"tls-cert", "", "PEM certificate chain for the HTTPS listener instead of one issued by the own CA (needs --tls-key)", &c.TLSCert},
		{"tls-key", "", "PEM private key for --tls-cert", &c.TLSKey},
		{"enroll-rate", "20", "enrollments per second allowed to each enrollment credential (token bucket); 0 is unlimited", &c.EnrollRate},
		{"enroll-burst", "40", "burst of the per-credential enrollment limit", &c.EnrollBurst},
		{"pprof-addr", "", "address for Go's profiling endpoints (/debug/pprof/); empty is off; keep it on loopback", &c.PprofAddr},
		{"log-level", "info", "debug, info, warn or error", &c.LogLevel},
		{"log-format", "text", "text or json", &c.LogFormat},
	}
}

// envName returns the environment variable of a flag: data-dir → FLEETPKI_DATA_DIR.
func envName(flagName string) string {
	return "FLEETPKI_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// register adds the settings to fs, with the environment's values as
// defaults so that a flag on the command line overrides them.
func (c *config) register(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) {
	for _, s := range c.settings() {
		def := s.def
		if v, ok := lookupEnv(envName(s.name)); ok {
			def = v
		}
		fs.StringVar(s.dst, s.name, def, s.usage+" (env "+envName(s.name)+")")
	}
	c.envKeyPassword, _ = lookupEnv(envKeyPassword)
}

// Validate checks the settings that every subcommand uses, prepares the data
// directory (created 0700 when missing) and reads the key password. With
// listeners set it also checks the listener addresses and the public URL,
// which only serve uses. Errors name the flag and the offending value.
func (c *config) Validate(listeners bool) error {
	if err := c.level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	switch ca.KeyAlgorithm(c.KeyAlgorithm) {
	case ca.ECDSAP256, ca.ECDSAP384, ca.RSA3072:
	default:
		return fmt.Errorf("--key-algorithm %q: want %s, %s or %s", c.KeyAlgorithm, ca.ECDSAP256, ca.ECDSAP384, ca.RSA3072)
	}
	if err := validateDatabaseURL(c.DatabaseURL); err != nil {
		return err
	}
	if listeners {
		for _, a := range []struct{ flag, value string }{
			{"--http-addr", c.HTTPAddr}, {"--https-addr", c.HTTPSAddr}, {"--mqtt-addr", c.MQTTAddr},
		} {
			if a.flag == "--mqtt-addr" && a.value == "" {
				continue // an empty MQTT address disables the broker
			}
			if err := validateAddr(a.value); err != nil {
				return fmt.Errorf("%s %q: %w", a.flag, a.value, err)
			}
		}
		var err error
		if c.enrollRate, err = strconv.ParseFloat(c.EnrollRate, 64); err != nil || c.enrollRate < 0 {
			return fmt.Errorf("--enroll-rate %q: want a number of requests per second, 0 for unlimited", c.EnrollRate)
		}
		if c.enrollBurst, err = strconv.Atoi(c.EnrollBurst); err != nil || c.enrollBurst < 1 {
			return fmt.Errorf("--enroll-burst %q: want a whole number of at least 1", c.EnrollBurst)
		}
		if c.PprofAddr != "" {
			if err := validateAddr(c.PprofAddr); err != nil {
				return fmt.Errorf("--pprof-addr %q: %w", c.PprofAddr, err)
			}
		}
		if (c.TLSCert == "") != (c.TLSKey == "") {
			return errors.New("--tls-cert and --tls-key go together: set both or neither")
		}
		if err := validatePublicURL(c.PublicURL); err != nil {
			return fmt.Errorf("--public-url %q: %w", c.PublicURL, err)
		}
	}
	if err := prepareDataDir(c.DataDir); err != nil {
		return fmt.Errorf("--data-dir %q: %w", c.DataDir, err)
	}
	return c.readKeyPassword()
}

// validateAddr accepts host:port with a numeric port from 0 to 65535; port 0
// picks a free port (serve logs the one it got).
func validateAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return errors.New(ae.Err) // SplitHostPort's message repeats the address
		}
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// validatePublicURL mirrors what ca.New accepts, so that serve fails on the
// flag's name rather than deep inside the CA.
func validatePublicURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must start with http:// or https://")
	case u.Host == "":
		return errors.New("has no host")
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return errors.New("must not carry a query, fragment or user")
	}
	return nil
}

// validateDatabaseURL accepts empty (SQLite) or a postgres URL. The value is
// never echoed: it may hold a password.
func validateDatabaseURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return errors.New("--database-url: want a postgres:// or postgresql:// URL (or nothing, for SQLite in the data directory)")
	}
	return nil
}

// prepareDataDir creates dir (0700) if it is missing and checks that it is a
// writable directory by creating and removing a file in it, which is the
// only test that also holds for root, read-only mounts and ACLs.
func prepareDataDir(dir string) error {
	if dir == "" {
		return errors.New("must not be empty")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return errors.New("not a directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create: %w", unwrapPath(err))
	}
	f, err := os.CreateTemp(dir, ".write-test-")
	if err != nil {
		return fmt.Errorf("not writable: %w", unwrapPath(err))
	}
	name := f.Name()
	_ = f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("not writable: %w", unwrapPath(err))
	}
	return nil
}

// unwrapPath drops the path from a *PathError, since the caller already names it.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readKeyPassword takes the CA key password from --key-password-file or
// FLEETPKI_KEY_PASSWORD; both at once is refused as ambiguous. A file's
// trailing newline is not part of the password.
func (c *config) readKeyPassword() error {
	switch {
	case c.KeyPasswordFile != "" && c.envKeyPassword != "":
		return fmt.Errorf("--key-password-file and %s are both set: use one", envKeyPassword)
	case c.KeyPasswordFile != "":
		b, err := os.ReadFile(c.KeyPasswordFile)
		if err != nil {
			return fmt.Errorf("--key-password-file %q: %w", c.KeyPasswordFile, unwrapPath(err))
		}
		c.keyPassword = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(c.keyPassword) == 0 {
			return fmt.Errorf("--key-password-file %q is empty", c.KeyPasswordFile)
		}
	case c.envKeyPassword != "":
		c.keyPassword = []byte(c.envKeyPassword)
	}
	return nil
}

// databasePath is the SQLite file used when no database URL is set.
func (c *config) databasePath() string { return filepath.Join(c.DataDir, "fleetpki.db") }

// adminPasswordPath is where serve writes the first admin's password.
func (c *config) adminPasswordPath() string { return filepath.Join(c.DataDir, "admin-password") }

// tlsNames are the names the self-issued HTTPS certificate carries: the
// listen host (or localhost and the loopback addresses for a wildcard
// address) and --tls-san.
func (c *config) tlsNames() []string { return c.tlsNamesFor(c.HTTPSAddr) }

// tlsNamesFor returns the names a server certificate for a listener on addr
// carries: its host (or the local names for a wildcard address) and --tls-san.
func (c *config) tlsNamesFor(addr string) []string {
	host, _, _ := net.SplitHostPort(addr)
	var names []string
	switch host {
	case "", "0.0.0.0", "::":
		names = []string{"localhost", "127.0.0.1", "::1"}
		if h, err := os.Hostname(); err == nil && h != "" {
			names = append(names, h)
		}
	default:
		names = []string{host}
	}
	for _, n := range strings.Split(c.TLSSAN, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	return names
}

// profilesDir is where extra certificate profiles (*.json) are read from, if it exists.
func (c *config) profilesDir() string { return filepath.Join(c.DataDir, "profiles") }

// newLogger builds the process's logger on w (standard error).
func (c *config) newLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
