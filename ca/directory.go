package ca

import (
	"context"
	"fmt"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// DirectoryStore is what the Directory reads.
type DirectoryStore interface {
	GetCertificate(ctx context.Context, serial pki.Serial) (pki.CertRecord, error)
	ListCertificates(ctx context.Context, f pki.CertFilter) (pki.Page[pki.CertRecord], error)
	GetDevice(ctx context.Context, id string) (pki.Device, error)
	ListDevices(ctx context.Context, f pki.DeviceFilter) (pki.Page[pki.Device], error)
	Stats(ctx context.Context, now time.Time, days int) (pki.Stats, error)
}

// Directory answers the read side of administration: devices, certificates
// and their counts (the audit log is package audit's, users package accounts'). It exists so that the API and the web UI read through
// the domain and never touch the store.
type Directory struct {
	store DirectoryStore
	clock pki.Clock
}

// NewDirectory returns a Directory over st.
func NewDirectory(st DirectoryStore, clock pki.Clock) *Directory {
	if clock == nil {
		clock = pki.SystemClock{}
	}
	return &Directory{store: st, clock: clock}
}

// Certificate returns one certificate.
func (d *Directory) Certificate(ctx context.Context, serial pki.Serial) (pki.CertRecord, error) {
	c, err := d.store.GetCertificate(ctx, serial)
	if err != nil {
		return pki.CertRecord{}, fmt.Errorf("certificate %s: %w", serial, err)
	}
	return c, nil
}

// Certificates lists certificates, newest first; the expired status filter
// uses the directory's clock.
func (d *Directory) Certificates(ctx context.Context, f pki.CertFilter) (pki.Page[pki.CertRecord], error) {
	f.Now = d.clock.Now()
	p, err := d.store.ListCertificates(ctx, f)
	if err != nil {
		return p, fmt.Errorf("list certificates: %w", err)
	}
	return p, nil
}

// Device returns one device.
func (d *Directory) Device(ctx context.Context, id string) (pki.Device, error) {
	dev, err := d.store.GetDevice(ctx, id)
	if err != nil {
		return pki.Device{}, fmt.Errorf("device %q: %w", id, err)
	}
	return dev, nil
}

// Devices lists devices in id order.
func (d *Directory) Devices(ctx context.Context, f pki.DeviceFilter) (pki.Page[pki.Device], error) {
	p, err := d.store.ListDevices(ctx, f)
	if err != nil {
		return p, fmt.Errorf("list devices: %w", err)
	}
	return p, nil
}

// Stats counts devices and certificates now, with the last days of issuance.
func (d *Directory) Stats(ctx context.Context, days int) (pki.Stats, error) {
	st, err := d.store.Stats(ctx, d.clock.Now(), days)
	if err != nil {
		return pki.Stats{}, fmt.Errorf("stats: %w", err)
	}
	return st, nil
}
