package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

// revoke revokes one certificate (--serial) or every unexpired certificate
// of a device (--device-id) in the data directory's or database's store.
// A running serve hears of it within a second: through Postgres
// notifications, or by polling the SQLite file (see pollRevocations).
func (c *cli) revoke(ctx context.Context, args []string) error {
	cfg := &config{}
	fs := c.newFlags("revoke", cfg)
	serial := fs.String("serial", "", "serial of the certificate to revoke (hex)")
	device := fs.String("device-id", "", "device whose unexpired certificates all get revoked")
	reasonName := fs.String("reason", "unspecified", "RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, …")
	log, err := c.start(fs, cfg, args, false)
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
	st, err := openStore(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer st.Close()
	h, err := ca.LoadHierarchy(ctx, cfg.DataDir, cfg.keyPassword)
	if err != nil {
		return err
	}
	authority, err := newCA(ctx, cfg, h, st, log)
	if err != nil {
		return err
	}
	var recs []pki.CertRecord
	if *serial != "" {
		s, err := pki.ParseSerial(*serial)
		if err != nil {
			return usageError{fmt.Errorf("revoke: --serial: %w", err)}
		}
		rec, err := authority.Revoke(ctx, s, reason, cliActor())
		if err != nil {
			return err
		}
		recs = append(recs, rec)
	} else if recs, err = authority.RevokeDevice(ctx, *device, reason, cliActor()); err != nil {
		return err
	}
	for _, r := range recs {
		fmt.Fprintf(c.stdout, "%s\t%s\t%s\t%s\n", r.Serial, r.DeviceID, r.Status, r.Reason)
	}
	fmt.Fprintf(c.stderr, "%d certificate(s) revoked or already revoked.\n", len(recs))
	return nil
}

// pollRevocations brings revocations made by other processes on the same
// SQLite file (`fleetpki revoke`) into serve's revocation feed every
// interval. Postgres needs none: its revocations arrive by notification.
func pollRevocations(ctx context.Context, st store.Store, keyID string, interval time.Duration, log *slog.Logger,
	publish func(context.Context, pki.Serial) error) error {
	seen := map[pki.Serial]bool{}
	// Overlap each query with the last so that a row committed with a
	// slightly older timestamp is not missed; seen drops the repeats.
	const overlap = 5 * time.Second
	since := time.Now().Add(-overlap)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := time.Now()
		next := map[pki.Serial]bool{}
		for rc, err := range st.RevokedCerts(ctx, keyID, now, since) {
			if err != nil {
				log.WarnContext(ctx, "polling revocations failed", "err", err)
				break
			}
			next[rc.Serial] = true
			if !seen[rc.Serial] {
				if err := publish(ctx, rc.Serial); err != nil {
					log.WarnContext(ctx, "revocation from another process not applied", "serial", rc.Serial, "err", err)
				}
			}
		}
		seen, since = next, now.Add(-overlap)
	}
}
