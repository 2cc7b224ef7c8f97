// Package config is the typed configuration of the fleetpki binary: every
// setting of every subcommand, its flag, its FLEETPKI_* environment
// variable and its default, in one table; which subcommand takes which
// settings; and one Validate that parses the raw strings into typed fields
// and refuses inconsistent settings with a message naming the flag.
package config

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
	"time"

	"github.com/fleetpki/fleetpki/ca"
)

// Config is the configuration of one subcommand. Each setting is a flag of
// the subcommands whose group registers it, and the environment variable
// FLEETPKI_<FLAG_IN_UPPER_SNAKE>; a flag on the command line wins over the
// environment, which wins over the default in settings. Validate parses
// the raw strings once into the typed fields the commands use.
type Config struct {
	// Raw settings, as flags and the environment give them.
	DataDir          string
	DatabaseURL      string
	HTTPAddr         string
	HTTPSAddr        string
	MQTTAddr         string
	PublicURL        string
	KeyAlgorithm     string
	KeyPasswordFile  string
	KMSURI           string
	OCSPCacheSize    string
	OCSPHTTPMaxAge   string
	OCSPValidity     string
	ExpiryWindow     string
	ExpiryWebhook    string
	ExpirySecretFile string
	ExpiryInterval   string
	LogLevel         string
	LogFormat        string
	TLSSAN           string
	TLSCert          string
	TLSKey           string
	EnrollRate       string
	EnrollBurst      string
	PprofAddr        string
	MQTTACLFile      string
	MQTTAnyClientID  string
	MQTTMaxClients   string
	MQTTMaxRetained  string
	MQTTMaxRetBytes  string
	OCSPURL          string
	CAFile           string
	CRLURL           string
	OCSPMaxAge       string
	RecheckInterval  string
	FailOpenGrace    string
	envKeyPassword   string
	envKMSPIN        string
	envExpirySecret  string
	registeredGroups []group

	// Typed settings, set by Validate for the registered groups.
	Level           slog.Level
	KeyPassword     []byte
	EnrollPerSecond float64
	EnrollBurstN    int
	OCSPCacheBytes  uint64
	OCSPMaxAgeHTTP  time.Duration
	OCSPValidityD   time.Duration
	Expiry          ExpirySettings
	MQTT            MQTTSettings
	Remote          RemoteSettings
}

// MQTTSettings are the broker's, bundled or standalone.
type MQTTSettings struct {
	MaxClients       int64
	MaxRetained      int
	MaxRetainedBytes int
	AnyClientID      bool
}

// RemoteSettings are the standalone broker's view of a remote fleetpki.
type RemoteSettings struct {
	OCSPMaxAge, RecheckInterval, FailOpenGrace time.Duration
}

// group is a set of settings some subcommands share.
type group int

const (
	groupStore  group = iota // data dir, database, key password
	groupLog                 // logging
	groupHTTP                // the plain HTTP listener
	groupServe               // serve's HTTPS listener and what it issues
	groupTLS                 // a listener's own certificate from files
	groupKeys                // the algorithm of CA keys made
	groupMQTT                // the broker's listener and limits
	groupCAFile              // the fleetpki chain, for processes without the data directory
	groupRemote              // a standalone broker's remote fleetpki
)

// EnvExpirySecret carries the expiry webhook's signing secret.
const EnvExpirySecret = "FLEETPKI_EXPIRY_WEBHOOK_SECRET"

// ExpirySettings are the expiry notices' settings.
type ExpirySettings struct {
	Window, Interval time.Duration
	Webhook          string
	Secret           []byte
}

// EnvKeyPassword names the variable that carries the CA key password; it has
// no flag because a password on a command line is visible to every local user.
const EnvKeyPassword = "FLEETPKI_KEY_PASSWORD"

// setting is one configuration entry: its flag name, default, help and group.
type setting struct {
	name  string
	def   string
	usage string
	dst   *string
	group group
}

// settings lists every setting with its default: the one place they live.
func (c *Config) settings() []setting {
	return []setting{
		{"data-dir", "./fleetpki-data", "directory for CA keys, the embedded database and generated secrets", &c.DataDir, groupStore},
		{"database-url", "", "postgres://… URL; empty uses SQLite in the data directory", &c.DatabaseURL, groupStore},
		{"key-password-file", "", "file holding the password that encrypts the CA keys (or set " + EnvKeyPassword + ")", &c.KeyPasswordFile, groupStore},
		{"log-level", "info", "debug, info, warn or error", &c.LogLevel, groupLog},
		{"log-format", "text", "text or json", &c.LogFormat, groupLog},
		{"http-addr", "127.0.0.1:8080", "plain HTTP listener: OCSP, CRL, CA certificates, health, metrics", &c.HTTPAddr, groupHTTP},
		{"ocsp-validity", "24h", "life of OCSP answers (nextUpdate - thisUpdate), re-signed at half of it: the longest a relying party that caches answers (NATS, an HTTP cache) trusts a good answer after a revocation; e.g. 5m (more signing)", &c.OCSPValidity, groupHTTP},
		{"ocsp-http-max-age", "0", "cap on the Cache-Control max-age of OCSP answers, e.g. 5m, for an HTTP cache or CDN in front (it then serves a revoked certificate's old answer at most that long); 0: until the answer's nextUpdate", &c.OCSPHTTPMaxAge, groupHTTP},
		{"ocsp-cache-bytes", "256MiB", "memory for cached OCSP answers (their DER and bookkeeping), e.g. 256MiB or 2GiB; the least asked are evicted past it", &c.OCSPCacheSize, groupHTTP},
		{"https-addr", "127.0.0.1:8443", "TLS listener: REST API, EST and the admin UI", &c.HTTPSAddr, groupServe},
		{"public-url", "http://127.0.0.1:8080", "base URL of the HTTP listener, written into certificates (AIA, CDP)", &c.PublicURL, groupServe},
		{"key-algorithm", string(ca.ECDSAP256), "CA key algorithm on creation: ecdsa-p256, ecdsa-p384 or rsa-3072", &c.KeyAlgorithm, groupKeys},
		{"kms", "", "create the CA keys in this KMS, e.g. 'pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=fleetpki?pin-source=/etc/fleetpki/pin' (or the PIN in " + ca.EnvKMSPIN + "); empty: key files", &c.KMSURI, groupKeys},
		{"tls-san", "", "extra comma-separated DNS names or IPs for the HTTPS certificate the CA issues itself", &c.TLSSAN, groupServe},
		{"tls-cert", "", "PEM certificate chain for the listener instead of one issued by the own CA (needs --tls-key)", &c.TLSCert, groupTLS},
		{"tls-key", "", "PEM private key for --tls-cert", &c.TLSKey, groupTLS},
		{"expiry-window", "30d", "certificates expiring within it are listed, counted (fleetpki_certificates_expiring) and announced to --expiry-webhook", &c.ExpiryWindow, groupServe},
		{"expiry-interval", "1m", "how often expiring certificates are counted and due notices sent", &c.ExpiryInterval, groupServe},
		{"expiry-webhook", "", "URL that gets a signed POST for each expiring certificate (retried, then kept as a dead letter); empty: none", &c.ExpiryWebhook, groupServe},
		{"expiry-webhook-secret-file", "", "file holding the secret that signs the webhook's notices (HMAC-SHA256; or set " + EnvExpirySecret + ")", &c.ExpirySecretFile, groupServe},
		{"enroll-rate", "20", "enrollments per second allowed to each enrollment credential (token bucket); 0 is unlimited", &c.EnrollRate, groupServe},
		{"enroll-burst", "40", "burst of the per-credential enrollment limit", &c.EnrollBurst, groupServe},
		{"pprof-addr", "", "address for Go's profiling endpoints (/debug/pprof/); empty is off; keep it on loopback", &c.PprofAddr, groupServe},
		{"mqtt-addr", "127.0.0.1:8883", "MQTT over TLS listener (client certificates required); empty disables the broker", &c.MQTTAddr, groupMQTT},
		{"mqtt-acl-file", "", "MQTT ACL rules (lines \"pub|sub|pubsub FILTER\" with {device_id}); empty allows each device devices/{device_id}/# only", &c.MQTTACLFile, groupMQTT},
		{"mqtt-max-clients", "100000", "most MQTT sessions at once; past it a CONNECT is refused", &c.MQTTMaxClients, groupMQTT},
		{"mqtt-max-retained", "16", "most retained messages one device may keep on the broker", &c.MQTTMaxRetained, groupMQTT},
		{"mqtt-max-retained-bytes", "65536", "most bytes of retained messages one device may keep on the broker", &c.MQTTMaxRetBytes, groupMQTT},
		{"mqtt-any-client-id", "false", "let MQTT clients use a client id other than their certificate's device id", &c.MQTTAnyClientID, groupMQTT},
		{"ca-file", "", "PEM chain of the fleetpki issuing CA, intermediate first, root last", &c.CAFile, groupCAFile},
		{"ocsp-url", "", "OCSP responder to ask (default: each certificate's AIA OCSP URL)", &c.OCSPURL, groupRemote},
		{"crl-url", "", "CRL to fall back on when OCSP gives no answer", &c.CRLURL, groupRemote},
		{"ocsp-max-age", "5m", "longest time a good OCSP answer is trusted, even if its nextUpdate is later", &c.OCSPMaxAge, groupRemote},
		{"recheck-interval", "60s", "how often live sessions' certificates are checked again", &c.RecheckInterval, groupRemote},
		{"fail-open-grace", "0", "when no fresh OCSP answer can be had, admit devices whose last good answer is at most this old (0: fail closed)", &c.FailOpenGrace, groupRemote},
	}
}

// commandGroups says which settings each subcommand takes; a flag of
// another group is an unknown flag there.
var commandGroups = map[string][]group{
	"serve":              {groupStore, groupLog, groupHTTP, groupServe, groupTLS, groupKeys, groupMQTT},
	"init":               {groupStore, groupLog, groupKeys},
	"migrate":            {groupStore, groupLog},
	"user create":        {groupStore, groupLog},
	"user token":         {groupStore, groupLog},
	"user disable":       {groupStore, groupLog},
	"user enable":        {groupStore, groupLog},
	"credential create":  {groupStore, groupLog},
	"credential list":    {groupStore, groupLog},
	"credential disable": {groupStore, groupLog},
	"audit verify":       {groupStore, groupLog},
	"revoke":             {groupStore, groupLog},
	"broker":             {groupLog, groupMQTT, groupTLS, groupCAFile, groupRemote},
	"crl export":         {groupStore, groupLog, groupCAFile},
	"ocsp":               {groupStore, groupLog, groupHTTP, groupCAFile},
	"root sign":          {groupLog},
	"backup":             {groupStore, groupLog},
	"restore":            {groupStore, groupLog},
	"version":            {},
}

// envName returns the environment variable of a flag: data-dir → FLEETPKI_DATA_DIR.
func envName(flagName string) string {
	return "FLEETPKI_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Has reports whether the group's settings are registered.
func (c *Config) Has(g group) bool {
	for _, r := range c.registeredGroups {
		if r == g {
			return true
		}
	}
	return false
}

// Register adds the settings of the command's groups to fs.
func (c *Config) Register(fs *flag.FlagSet, command string, lookupEnv func(string) (string, bool)) {
	c.registeredGroups = commandGroups[command]
	for _, s := range c.settings() {
		*s.dst = s.def
		if !c.Has(s.group) {
			continue
		}
		fs.StringVar(s.dst, s.name, s.def, s.usage+" (env "+envName(s.name)+")")
	}
	if c.Has(groupStore) {
		c.envKeyPassword, _ = lookupEnv(EnvKeyPassword)
		c.envKMSPIN, _ = lookupEnv(ca.EnvKMSPIN)
	}
	if c.Has(groupServe) {
		c.envExpirySecret, _ = lookupEnv(EnvExpirySecret)
	}
}

// ApplyEnv sets every flag of fs that has an environment variable to its
// value, before the command line is parsed (so that a flag wins).
func ApplyEnv(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := lookupEnv(envName(f.Name)); ok && err == nil {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s %q: %w", envName(f.Name), v, serr)
			}
		}
	})
	return err
}

// Validate checks the settings of the registered groups and parses them
// into the typed fields; for the store group it also prepares the data
// directory (created 0700 when missing) and reads the key password. Errors
// name the flag and the offending value.
func (c *Config) Validate() error {
	if err := c.Level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	if err := c.validateListen(); err != nil {
		return err
	}
	if c.Has(groupMQTT) {
		if err := c.validateMQTT(); err != nil {
			return err
		}
	}
	if c.Has(groupRemote) {
		if err := c.validateRemote(); err != nil {
			return err
		}
	}
	if !c.Has(groupStore) {
		return nil
	}
	if err := validateDatabaseURL(c.DatabaseURL); err != nil {
		return err
	}
	if err := PrepareDataDir(c.DataDir); err != nil {
		return fmt.Errorf("--data-dir %q: %w", c.DataDir, err)
	}
	return c.readKeyPassword()
}

// validateListen checks the listener, key and TLS groups that are registered.
func (c *Config) validateListen() error {
	if c.Has(groupKeys) {
		switch ca.KeyAlgorithm(c.KeyAlgorithm) {
		case ca.ECDSAP256, ca.ECDSAP384, ca.RSA3072:
		default:
			return fmt.Errorf("--key-algorithm %q: want %s, %s or %s", c.KeyAlgorithm, ca.ECDSAP256, ca.ECDSAP384, ca.RSA3072)
		}
	}
	if c.Has(groupHTTP) {
		if err := validateAddr(c.HTTPAddr); err != nil {
			return fmt.Errorf("--http-addr %q: %w", c.HTTPAddr, err)
		}
		n, err := ParseBytes(c.OCSPCacheSize)
		if err != nil || n < 1<<20 {
			return fmt.Errorf("--ocsp-cache-bytes %q: want a size of at least 1MiB, e.g. 256MiB", c.OCSPCacheSize)
		}
		c.OCSPCacheBytes = n
		d, err := ParseDuration(c.OCSPHTTPMaxAge)
		if err != nil || d < 0 {
			return fmt.Errorf("--ocsp-http-max-age %q: want a duration such as 5m, or 0", c.OCSPHTTPMaxAge)
		}
		c.OCSPMaxAgeHTTP = d
		if c.OCSPValidityD, err = ParseDuration(c.OCSPValidity); err != nil || c.OCSPValidityD < 10*time.Second || c.OCSPValidityD > 7*24*time.Hour {
			return fmt.Errorf("--ocsp-validity %q: want a duration from 10s to 7d", c.OCSPValidity)
		}
	}
	if c.Has(groupTLS) && (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together: set both or neither")
	}
	if !c.Has(groupServe) {
		return nil
	}
	if err := validateAddr(c.HTTPSAddr); err != nil {
		return fmt.Errorf("--https-addr %q: %w", c.HTTPSAddr, err)
	}
	var err error
	if c.Expiry.Window, err = ParseDuration(c.ExpiryWindow); err != nil || c.Expiry.Window <= 0 {
		return fmt.Errorf("--expiry-window %q: want a duration such as 30d", c.ExpiryWindow)
	}
	if c.Expiry.Interval, err = ParseDuration(c.ExpiryInterval); err != nil || c.Expiry.Interval < time.Second {
		return fmt.Errorf("--expiry-interval %q: want a duration of at least 1s", c.ExpiryInterval)
	}
	if c.ExpiryWebhook != "" {
		if u, err := url.Parse(c.ExpiryWebhook); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("--expiry-webhook %q: want an http(s) URL", c.ExpiryWebhook)
		}
		secret, err := ReadSecret(c.ExpirySecretFile, func(string) (string, bool) { return c.envExpirySecret, c.envExpirySecret != "" }, EnvExpirySecret)
		if err != nil || len(secret) < 16 {
			return fmt.Errorf("--expiry-webhook needs a signing secret of at least 16 characters (--expiry-webhook-secret-file or %s)", EnvExpirySecret)
		}
		c.Expiry.Webhook, c.Expiry.Secret = c.ExpiryWebhook, []byte(secret)
	}
	if c.EnrollPerSecond, err = strconv.ParseFloat(c.EnrollRate, 64); err != nil || c.EnrollPerSecond < 0 {
		return fmt.Errorf("--enroll-rate %q: want a number of requests per second, 0 for unlimited", c.EnrollRate)
	}
	if c.EnrollBurstN, err = strconv.Atoi(c.EnrollBurst); err != nil || c.EnrollBurstN < 1 {
		return fmt.Errorf("--enroll-burst %q: want a whole number of at least 1", c.EnrollBurst)
	}
	if c.PprofAddr != "" {
		if err := validateAddr(c.PprofAddr); err != nil {
			return fmt.Errorf("--pprof-addr %q: %w", c.PprofAddr, err)
		}
	}
	if err := validatePublicURL(c.PublicURL); err != nil {
		return fmt.Errorf("--public-url %q: %w", c.PublicURL, err)
	}
	return nil
}

func (c *Config) validateMQTT() error {
	if c.MQTTAddr != "" { // empty disables the broker
		if err := validateAddr(c.MQTTAddr); err != nil {
			return fmt.Errorf("--mqtt-addr %q: %w", c.MQTTAddr, err)
		}
	}
	var err error
	if c.MQTT.MaxClients, err = strconv.ParseInt(c.MQTTMaxClients, 10, 64); err != nil || c.MQTT.MaxClients < 1 {
		return fmt.Errorf("--mqtt-max-clients %q: want a whole number of at least 1", c.MQTTMaxClients)
	}
	if c.MQTT.MaxRetained, err = strconv.Atoi(c.MQTTMaxRetained); err != nil || c.MQTT.MaxRetained < 1 {
		return fmt.Errorf("--mqtt-max-retained %q: want a whole number of at least 1", c.MQTTMaxRetained)
	}
	if c.MQTT.MaxRetainedBytes, err = strconv.Atoi(c.MQTTMaxRetBytes); err != nil || c.MQTT.MaxRetainedBytes < 1 {
		return fmt.Errorf("--mqtt-max-retained-bytes %q: want a whole number of at least 1", c.MQTTMaxRetBytes)
	}
	if c.MQTT.AnyClientID, err = strconv.ParseBool(c.MQTTAnyClientID); err != nil {
		return fmt.Errorf("--mqtt-any-client-id %q: want true or false", c.MQTTAnyClientID)
	}
	return nil
}

func (c *Config) validateRemote() error {
	for _, d := range []struct {
		flag, value string
		dst         *time.Duration
	}{
		{"--ocsp-max-age", c.OCSPMaxAge, &c.Remote.OCSPMaxAge},
		{"--recheck-interval", c.RecheckInterval, &c.Remote.RecheckInterval},
		{"--fail-open-grace", c.FailOpenGrace, &c.Remote.FailOpenGrace},
	} {
		v, err := ParseDuration(d.value)
		if err != nil {
			return fmt.Errorf("%s %q: %w", d.flag, d.value, err)
		}
		*d.dst = v
	}
	return nil
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

// PrepareDataDir creates dir (0700) if it is missing and checks that it is a
// writable directory by creating and removing a file in it, which is the
// only test that also holds for root, read-only mounts and ACLs.
func PrepareDataDir(dir string) error {
	if dir == "" {
		return errors.New("must not be empty")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return errors.New("not a directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create: %w", UnwrapPath(err))
	}
	f, err := os.CreateTemp(dir, ".write-test-")
	if err != nil {
		return fmt.Errorf("not writable: %w", UnwrapPath(err))
	}
	name := f.Name()
	_ = f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("not writable: %w", UnwrapPath(err))
	}
	return nil
}

// UnwrapPath drops the path from a *PathError, since the caller already names it.
func UnwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readKeyPassword takes the CA key password from --key-password-file or
// FLEETPKI_KEY_PASSWORD; both at once is refused as ambiguous. A file's
// trailing newline is not part of the password.
func (c *Config) readKeyPassword() error {
	switch {
	case c.KeyPasswordFile != "" && c.envKeyPassword != "":
		return fmt.Errorf("--key-password-file and %s are both set: use one", EnvKeyPassword)
	case c.KeyPasswordFile != "":
		b, err := os.ReadFile(c.KeyPasswordFile)
		if err != nil {
			return fmt.Errorf("--key-password-file %q: %w", c.KeyPasswordFile, UnwrapPath(err))
		}
		c.KeyPassword = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(c.KeyPassword) == 0 {
			return fmt.Errorf("--key-password-file %q is empty", c.KeyPasswordFile)
		}
	case c.envKeyPassword != "":
		c.KeyPassword = []byte(c.envKeyPassword)
	}
	return nil
}

// Dialect names the configured store: "postgres" or "sqlite".
func (c *Config) Dialect() string {
	if c.DatabaseURL != "" {
		return "postgres"
	}
	return "sqlite"
}

// RootSignedPath is where serve reads the bundle an offline root signed
// (its CRL, OCSP answers about the issuing CA).
func (c *Config) RootSignedPath() string { return filepath.Join(c.DataDir, "root-signed.pem") }

// KMS is the key manager for CA keys: the --kms URI for keys to create (may
// be empty) and the PIN of the environment, for loading keys kms.json names.
func (c *Config) KMS() *ca.KMS { return &ca.KMS{URI: c.KMSURI, PIN: c.envKMSPIN} }

// DatabasePath is the SQLite file used when no database URL is set.
func (c *Config) DatabasePath() string { return filepath.Join(c.DataDir, "fleetpki.db") }

// AdminPasswordPath is where serve writes the first admin's password.
func (c *Config) AdminPasswordPath() string { return filepath.Join(c.DataDir, "admin-password") }

// ProfilesDir is where extra certificate profiles (*.json) are read from, if it exists.
func (c *Config) ProfilesDir() string { return filepath.Join(c.DataDir, "profiles") }

// TLSNamesFor returns the names a server certificate for a listener on addr
// carries: its host (or the local names for a wildcard address) and --tls-san.
func (c *Config) TLSNamesFor(addr string) []string {
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

// NewLogger builds the process's logger on w (standard error).
func (c *Config) NewLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
