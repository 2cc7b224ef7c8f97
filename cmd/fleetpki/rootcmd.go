package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetpki/fleetpki/internal/config"
	"github.com/fleetpki/fleetpki/rootsign"
)

// rootSign runs on the offline machine: it signs the root's CRL and OCSP
// answers about the issuing CAs for --valid and writes them as one bundle
// for serve (copied to <data-dir>/root-signed.pem).
func (c *cli) rootSign(ctx context.Context, args []string) error {
	cfg := &config.Config{}
	fs := c.newFlags("root sign", cfg)
	dir := fs.String("root-dir", "", "the offline root directory 'fleetpki init --offline-root' made (root.key, chain.pem)")
	out := fs.String("out", "root-signed.pem", "the bundle to write; copy it to serve's <data-dir>/root-signed.pem")
	var valid config.DurationValue
	fs.Var(&valid, "valid", "how long the CRL and answers stay valid, e.g. 30d (serve warns 7 days before and stops serving them after)")
	passwordFile := fs.String("key-password-file", "", "file holding the root key's password (or set "+config.EnvKeyPassword+")")
	if _, err := c.start(fs, cfg, args); err != nil {
		return err
	}
	if *dir == "" || valid == 0 {
		return usageError{errors.New("root sign: --root-dir and --valid are required")}
	}
	password, err := config.ReadSecret(*passwordFile, c.lookupEnv, config.EnvKeyPassword)
	if err != nil {
		return err
	}
	n, until, err := rootsign.SignOffline(ctx, *dir, []byte(password), time.Duration(valid), *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "Signed the root's CRL and OCSP answers for %d issuing CA(s), valid until %s, into %s.\n",
		n, until.UTC().Format(time.RFC3339), *out)
	return nil
}
