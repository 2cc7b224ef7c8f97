package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/fleetpki/fleetpki/audit"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/internal/config"
	"github.com/fleetpki/fleetpki/migrations"
)

// initCA creates a new CA hierarchy in the data directory, or imports an
// existing issuing CA, without serving. It prints the root's SHA-256
// fingerprint alone on standard output for scripts.
func (c *cli) initCA(ctx context.Context, args []string) error {
	cfg := &config.Config{}
	fs := c.newFlags("init", cfg)
	chainFile := fs.String("import-chain", "", "PEM file with the issuing CA certificate, any further CAs, and the root last")
	keyFile := fs.String("import-key", "", "PEM file with the issuing CA's private key (decrypted with the key password if encrypted)")
	name := fs.String("ca-name", "fleetpki", "organisation and common-name prefix of a created CA (\"<name> Root CA\")")
	offlineRoot := fs.String("offline-root", "", "directory (removable media) for the root key and chain: the data directory gets no root key; 'fleetpki root sign' uses it offline")
	kmsKey := fs.String("kms-key", "", "with --import-chain and --kms: the issuing CA's key, already in the KMS (pkcs11:id=…;object=…)")
	log, err := c.start(fs, cfg, args)
	if err != nil {
		return err
	}
	importing := *chainFile != "" || *keyFile != "" || *kmsKey != ""
	switch {
	case *kmsKey != "" && (*chainFile == "" || *keyFile != "" || cfg.KMSURI == ""):
		return usageError{errors.New("init: --kms-key imports a key that is in the KMS: give it with --import-chain and --kms, without --import-key")}
	case importing && *kmsKey == "" && (*chainFile == "" || *keyFile == ""):
		return usageError{errors.New("init: --import-chain and --import-key go together")}
	case importing && *offlineRoot != "":
		return usageError{errors.New("init: an imported hierarchy brings no root key; --offline-root applies to a created CA")}
	case importing && *kmsKey == "" && cfg.KMSURI != "":
		return usageError{errors.New("init: to import into a KMS, put the key in the token first and give --kms-key (docs/keys.md)")}
	case importing && (isSet(fs, "key-algorithm") || isSet(fs, "ca-name")):
		return usageError{errors.New("init: --key-algorithm and --ca-name apply to a created CA, not to an imported one")}
	}

	// Open the store first: an unreachable database should fail before keys are made.
	e, err := c.open(ctx, cfg, log, openStoreOnly)
	if err != nil {
		return err
	}
	defer e.close()

	h, how, err := c.makeHierarchy(ctx, cfg, hierarchySource{chain: *chainFile, key: *keyFile, kmsKey: *kmsKey, name: *name, offlineRoot: *offlineRoot})
	if err != nil {
		return err
	}
	defer h.Close()
	alg := cfg.KeyAlgorithm
	if how == "imported" {
		alg = "" // the imported key's, not the flag's
	}
	if err := e.st.AppendAudit(ctx, ca.InitEvent(h, how, alg, cliActor(), time.Now())); err != nil {
		return fmt.Errorf("record the CA's %s in the audit log: %w", map[string]string{"created": "creation", "imported": "import"}[how], err)
	}
	warnUnencrypted(ctx, cfg, log)
	log.InfoContext(ctx, "CA ready", "imported", importing, "root", h.Root().Subject.String(),
		"issuing_ca", h.Intermediate().Subject.String(), "issuing_key", h.KeyLocation(), "data_dir", cfg.DataDir)
	if *offlineRoot != "" {
		log.InfoContext(ctx, "the root key is in the offline root directory only: store it offline, and publish what it signs with 'fleetpki root sign'",
			"offline_root", *offlineRoot)
	}
	fmt.Fprintln(c.stderr, "Root certificate SHA-256 fingerprint (devices and enrolling clients pin it):")
	fmt.Fprintln(c.stdout, h.RootFingerprint())
	return nil
}

// hierarchySource says where init's hierarchy comes from.
type hierarchySource struct{ chain, key, kmsKey, name, offlineRoot string }

// makeHierarchy imports (a key file, or a key already in the KMS) or
// creates the hierarchy; how is "imported" or "created".
func (c *cli) makeHierarchy(ctx context.Context, cfg *config.Config, src hierarchySource) (*ca.Hierarchy, string, error) {
	if src.chain == "" {
		h, err := ca.Init(ctx, ca.InitOptions{DataDir: cfg.DataDir, Algorithm: ca.KeyAlgorithm(cfg.KeyAlgorithm),
			Name: src.name, Password: cfg.KeyPassword, KMS: cfg.KMS(), OfflineRoot: src.offlineRoot})
		return h, "created", err
	}
	chainPEM, err := os.ReadFile(src.chain)
	if err != nil {
		return nil, "", fmt.Errorf("--import-chain: %w", err)
	}
	if src.kmsKey != "" {
		h, err := ca.ImportKMS(ctx, cfg.DataDir, chainPEM, *cfg.KMS(), src.kmsKey)
		return h, "imported", err
	}
	keyPEM, err := os.ReadFile(src.key)
	if err != nil {
		return nil, "", fmt.Errorf("--import-key: %w", err)
	}
	h, err := ca.Import(ctx, cfg.DataDir, chainPEM, keyPEM, cfg.KeyPassword)
	return h, "imported", err
}

// migrate applies pending migrations and nothing else.
func (c *cli) migrate(ctx context.Context, args []string) error {
	cfg := &config.Config{}
	fs := c.newFlags("migrate", cfg)
	status := fs.Bool("status", false, "list the schema versions this fleetpki knows, applied or pending, and change nothing")
	log, err := c.start(fs, cfg, args)
	if err != nil {
		return err
	}
	e, err := c.open(ctx, cfg, log, openStoreNoMigr)
	if err != nil {
		return err
	}
	defer e.close()
	if *status {
		ms, current, err := e.st.MigrationStatus(ctx)
		if err != nil {
			return err
		}
		pending := migrations.WriteStatus(c.stdout, ms)
		fmt.Fprintf(c.stderr, "The database is at schema version %d; %d migration(s) pending.\n", current, pending)
		return nil
	}
	if err := e.st.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	log.InfoContext(ctx, "the database schema is up to date")
	return nil
}

// auditVerify walks the audit log's hash chain; any break is an error.
func (c *cli) auditVerify(ctx context.Context, args []string) error {
	cfg := &config.Config{}
	fs := c.newFlags("audit verify", cfg)
	log, err := c.start(fs, cfg, args)
	if err != nil {
		return err
	}
	e, err := c.open(ctx, cfg, log, openStoreOnly)
	if err != nil {
		return err
	}
	defer e.close()
	n, err := audit.New(e.st, nil).Verify(ctx)
	if err != nil {
		return fmt.Errorf("audit log verification FAILED after %d good events: %w", n, err)
	}
	fmt.Fprintf(c.stdout, "audit log intact: %d events verified\n", n)
	return nil
}

// version prints the module version (set by the build's -ldflags or by the
// Go toolchain from version control) and the Go version.
func (c *cli) version(_ context.Context, args []string) error {
	cfg := &config.Config{}
	fs := c.newFlags("version", cfg)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, config.Version(linkedVersion, ca.PKCS11Compiled()))
	return nil
}

// linkedVersion is set at link time (-ldflags "-X main.linkedVersion=v1.2.3")
// and never written while the program runs.
var linkedVersion string
