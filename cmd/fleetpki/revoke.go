package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/fleetpki/fleetpki/internal/config"
	"github.com/fleetpki/fleetpki/pki"
)

// revoke revokes one certificate (--serial) or every unexpired certificate
// of a device (--device-id) in the data directory's or database's store.
// A running serve hears of it within a second (store.Backend.ListenRevocations).
func (c *cli) revoke(ctx context.Context, args []string) error {
	cfg := &config.Config{}
	fs := c.newFlags("revoke", cfg)
	serial := fs.String("serial", "", "serial of the certificate to revoke (hex)")
	device := fs.String("device-id", "", "device whose unexpired certificates all get revoked")
	reasonName := fs.String("reason", "unspecified", "RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, …")
	log, err := c.start(fs, cfg, args)
	if err != nil {
		return err
	}
	if (*serial == "") == (*device == "") {
		return usageError{errors.New("revoke: give exactly one of --serial and --device-id")}
	}
	reason, err := pki.ParseRevocationReason(*reasonName)
	if err != nil {
		return usageError{fmt.Errorf("revoke: --reason: %w", err)}
	}
	var s pki.Serial
	if *serial != "" {
		if s, err = pki.ParseSerial(*serial); err != nil {
			return usageError{fmt.Errorf("revoke: --serial: %w", err)}
		}
	}
	e, err := c.open(ctx, cfg, log, openCA)
	if err != nil {
		return err
	}
	defer e.close()
	var recs []pki.CertRecord
	if s != "" {
		rec, err := e.ca.Revoke(ctx, s, reason, cliActor())
		if err != nil {
			return err
		}
		recs = append(recs, rec)
	} else if recs, err = e.ca.RevokeDevice(ctx, *device, reason, cliActor()); err != nil {
		return err
	}
	for _, r := range recs {
		fmt.Fprintf(c.stdout, "%s\t%s\t%s\t%s\n", r.Serial, r.DeviceID, r.Status, r.Reason)
	}
	fmt.Fprintf(c.stderr, "%d certificate(s) revoked or already revoked.\n", len(recs))
	return nil
}
