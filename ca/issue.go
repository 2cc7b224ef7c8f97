package ca

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"

	"github.com/fleetpki/fleetpki/pki"
)

// IssueRequest asks for a device certificate.
type IssueRequest struct {
	// DeviceID becomes the subject CN and the URI SAN; see pki.ValidateDeviceID.
	DeviceID string
	// CSR is a PKCS#10 request, PEM or DER. Only its public key is used.
	CSR []byte
	// Profile names the profile; "" means DefaultProfile.
	Profile string
	// Metadata is stored with the device; see pki.ValidateMetadata.
	Metadata map[string]string
	// Names are the DNS names and IP addresses of a service certificate
	// (profiles of kind service); device profiles take none.
	Names []string
	// Actor is recorded in the audit event.
	Actor pki.Actor
}

// Issued is a newly issued certificate, already committed to the store.
type Issued struct {
	Record      pki.CertRecord
	Certificate *x509.Certificate
	// Chain is the issuing intermediate followed by the root (shared, do not modify).
	Chain []*x509.Certificate
	// Replayed says the certificate was issued earlier, to a request with
	// the same idempotency key and content.
	Replayed bool
}

const (
	// maxCSRBytes bounds what we parse: a PKCS#10 request with an RSA-8192
	// key is about 2 KB, so 64 KiB leaves room for any sane extension.
	maxCSRBytes = 64 << 10
	// maxSerialAttempts bounds retries after serial collisions. With 128
	// random bits a single collision is already astronomically unlikely, so
	// a second one in a row means the store reports Conflict for another
	// reason, and retrying further would only hide that.
	maxSerialAttempts = 3
)

// Issue issues a certificate for req.DeviceID under the requested profile.
// Bad input (device id, metadata, CSR, key, profile) is a pki.Invalid error.
// The certificate is returned only after it, the device and the audit event
// are committed; when the store fails, Issue returns the error and no certificate.
func (c *CA) Issue(ctx context.Context, req IssueRequest) (*Issued, error) {
	p, csr, err := c.check(ctx, req)
	if err != nil {
		return nil, err
	}
	names, err := serviceNames(req.Names)
	if err != nil {
		return nil, err
	}
	return c.sign(ctx, signRequest{
		deviceID: req.DeviceID,
		names:    names,
		profile:  p,
		csr:      csr,
		metadata: req.Metadata,
		actor:    req.Actor,
		action:   pki.ActionCertificateIssue,
	})
}

// CheckRequest runs every check Issue makes before signing (device id,
// metadata, profile, CSR, key), so a caller can refuse bad input before
// spending anything on it, such as an enrollment credential's use.
func (c *CA) CheckRequest(ctx context.Context, req IssueRequest) error {
	_, _, err := c.check(ctx, req)
	return err
}

func (c *CA) check(ctx context.Context, req IssueRequest) (*profile, *x509.CertificateRequest, error) {
	if err := pki.ValidateDeviceID(req.DeviceID); err != nil {
		return nil, nil, err
	}
	if err := pki.ValidateMetadata(req.Metadata); err != nil {
		return nil, nil, err
	}
	p, err := c.profile(req.Profile)
	if err != nil {
		return nil, nil, err
	}
	if (p.kind == KindService) != (len(req.Names) > 0) {
		if p.kind == KindService {
			return nil, nil, pki.Errorf(pki.Invalid, "profile %q issues service certificates: give at least one DNS name or IP address", p.name)
		}
		return nil, nil, pki.Errorf(pki.Invalid, "profile %q issues device certificates, which carry no DNS names or IP addresses", p.name)
	}
	if _, err := serviceNames(req.Names); err != nil {
		return nil, nil, err
	}
	if inter := c.h.Intermediate(); p.kind == KindService && len(inter.ExtKeyUsage) > 0 && !slices.Contains(inter.ExtKeyUsage, x509.ExtKeyUsageAny) &&
		slices.Contains(p.extKeyUsage, "serverAuth") && !slices.Contains(inter.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		// Verifiers nest EKUs: a server certificate under this CA would not verify.
		return nil, nil, pki.Errorf(pki.Invalid, "the issuing CA restricts extended key usage to exclude serverAuth; it cannot issue %q certificates", p.name)
	}
	if p.kind == KindService {
		// A service may not take over a device's id (its record, its
		// certificates); only service requests pay for this read.
		prev, err := c.store.ListCertificates(ctx, pki.CertFilter{DeviceID: req.DeviceID, Limit: 1})
		if err != nil {
			return nil, nil, fmt.Errorf("check %q: %w", req.DeviceID, err)
		}
		for _, rec := range prev.Items {
			if cert, err := x509.ParseCertificate(rec.DER); err != nil || !pki.IsServiceCertificate(cert) {
				return nil, nil, pki.Errorf(pki.Conflict, "%q is a device's id; give the service another name", req.DeviceID)
			}
		}
	}
	csr, err := parseCSR(req.CSR, p)
	if err != nil {
		c.log.DebugContext(ctx, "enrollment refused", "device_id", req.DeviceID, "err", err)
		return nil, nil, err
	}
	return p, csr, nil
}

// Renew issues a new certificate for the device and profile of current,
// which must be a certificate of this CA that is stored, not revoked and not
// expired. The device's metadata is left as it is. A certificate that does
// not qualify is a pki.Forbidden error; a bad CSR is pki.Invalid. The old
// certificate stays valid until it expires or is revoked.
func (c *CA) Renew(ctx context.Context, current *x509.Certificate, csrBytes []byte, actor pki.Actor) (*Issued, error) {
	if current == nil {
		return nil, pki.Errorf(pki.Invalid, "renew: no current certificate")
	}
	inter := c.h.Intermediate()
	if !bytes.Equal(current.RawIssuer, inter.RawSubject) || current.CheckSignatureFrom(inter) != nil {
		return nil, pki.Errorf(pki.Forbidden, "renew: the certificate was not issued by this CA")
	}
	if current.SerialNumber == nil || current.SerialNumber.Sign() <= 0 {
		return nil, pki.Errorf(pki.Forbidden, "renew: the certificate has no valid serial")
	}
	serial := pki.NewSerial(current.SerialNumber)
	rec, err := c.store.GetCertificate(ctx, serial)
	if errors.Is(err, pki.NotFound) {
		return nil, pki.Errorf(pki.Forbidden, "renew: certificate %s is not known to this CA", serial)
	}
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", serial, err)
	}
	if !bytes.Equal(rec.DER, current.Raw) {
		return nil, pki.Errorf(pki.Forbidden, "renew: certificate %s does not match the stored one", serial)
	}
	now := c.clock.Now()
	switch st := rec.StatusAt(now); {
	case st == pki.CertRevoked:
		return nil, pki.Errorf(pki.Forbidden, "renew: certificate %s is revoked", serial)
	case st == pki.CertExpired:
		return nil, pki.Errorf(pki.Forbidden, "renew: certificate %s has expired", serial)
	case now.Before(rec.NotBefore):
		return nil, pki.Errorf(pki.Forbidden, "renew: certificate %s is not yet valid", serial)
	}
	p, err := c.profile(rec.Profile)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", serial, err)
	}
	valid, err := c.store.ListCertificates(ctx, pki.CertFilter{DeviceID: rec.DeviceID, Status: pki.CertValid, Now: now, Limit: c.maxValid})
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", serial, err)
	}
	if len(valid.Items) >= c.maxValid {
		return nil, pki.Errorf(pki.Conflict, "renew: device %q already holds %d valid certificates, the most allowed; revoke an old one (superseded) or let it expire",
			rec.DeviceID, c.maxValid)
	}
	csr, err := parseCSR(csrBytes, p)
	if err != nil {
		c.log.DebugContext(ctx, "renewal refused", "device_id", rec.DeviceID, "serial", serial, "err", err)
		return nil, err
	}
	var names []string
	if p.kind == KindService {
		// A service keeps the names it was issued with (they were checked
		// against its credential then).
		names = append(names, current.DNSNames...)
		for _, ip := range current.IPAddresses {
			names = append(names, ip.String())
		}
	}
	return c.sign(ctx, signRequest{
		deviceID: rec.DeviceID,
		names:    names,
		profile:  p,
		csr:      csr,
		actor:    actor,
		action:   pki.ActionCertificateRenew,
		details:  map[string]string{"renewed_serial": string(serial)},
	})
}

// signRequest is a checked request, ready to be signed and stored.
type signRequest struct {
	deviceID string
	names    []string
	profile  *profile
	csr      *x509.CertificateRequest
	metadata map[string]string // nil: leave the device's metadata unchanged
	actor    pki.Actor
	action   string
	details  map[string]string
}

// sign renders the profile, signs, and commits. A pki.Conflict from the store
// is taken to be a serial collision: a new serial is drawn and the
// certificate signed again, because the signed bytes embed the serial.
func (c *CA) sign(ctx context.Context, r signRequest) (*Issued, error) {
	tmpl, err := r.profile.render(r.deviceID, r.names, r.csr.PublicKey, c.urls)
	if err != nil {
		return nil, fmt.Errorf("issue for %q: %w", r.deviceID, err)
	}
	now := c.clock.Now().UTC()
	tmpl.NotBefore, tmpl.NotAfter, err = c.validity(now, r.profile.validity)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("issue for %q: %w", r.deviceID, err)
		}
		tmpl.SerialNumber = newSerial()
		resp, err := c.cas.CreateCertificate(&apiv1.CreateCertificateRequest{
			Template: tmpl,
			Lifetime: tmpl.NotAfter.Sub(tmpl.NotBefore),
			Backdate: backdate,
		})
		if err != nil {
			return nil, pki.Wrap(pki.Unavailable, err, "the certificate could not be signed")
		}
		cert := resp.Certificate
		rec, dev, ev := c.records(now, r, cert)
		err = c.store.InsertCertificate(ctx, rec, dev, ev)
		if err == nil {
			if f := c.onIssued.Load(); f != nil {
				(*f)(rec)
			}
			c.log.InfoContext(ctx, "certificate issued", "action", r.action, "serial", rec.Serial,
				"device_id", r.deviceID, "profile", r.profile.name, "not_after", rec.NotAfter)
			return &Issued{Record: rec, Certificate: cert, Chain: c.h.Chain()}, nil
		}
		if errors.Is(err, pki.Conflict) && attempt < maxSerialAttempts {
			c.log.WarnContext(ctx, "serial collision; signing again with a new serial", "serial", rec.Serial, "attempt", attempt)
			continue
		}
		if pki.KindOf(err) == nil {
			err = pki.Wrap(pki.Unavailable, err, "the certificate could not be stored")
		}
		return nil, fmt.Errorf("issue for %q: store certificate %s: %w", r.deviceID, rec.Serial, err)
	}
}

// validity returns the validity window: backdated for clock skew, never
// outside the issuing CA's own validity.
func (c *CA) validity(now time.Time, lifetime time.Duration) (notBefore, notAfter time.Time, err error) {
	inter := c.h.Intermediate()
	notBefore, notAfter = now.Add(-backdate), now.Add(lifetime)
	if notBefore.Before(inter.NotBefore) {
		notBefore = inter.NotBefore
	}
	if notAfter.After(inter.NotAfter) {
		notAfter = inter.NotAfter
	}
	if !notAfter.After(now) || !now.After(inter.NotBefore) {
		return time.Time{}, time.Time{}, pki.Errorf(pki.Unavailable, "the issuing CA is valid from %s to %s and cannot issue now",
			inter.NotBefore.UTC().Format(time.RFC3339), inter.NotAfter.UTC().Format(time.RFC3339))
	}
	return notBefore, notAfter, nil
}

// records builds what the store commits for an issued certificate.
func (c *CA) records(now time.Time, r signRequest, cert *x509.Certificate) (pki.CertRecord, pki.Device, pki.AuditEvent) {
	sum := sha256.Sum256(cert.Raw)
	rec := pki.CertRecord{
		Serial:            pki.NewSerial(cert.SerialNumber),
		DeviceID:          r.deviceID,
		Profile:           r.profile.name,
		Status:            pki.CertValid,
		NotBefore:         cert.NotBefore.UTC(),
		NotAfter:          cert.NotAfter.UTC(),
		DER:               cert.Raw,
		IssuerKeyID:       c.issuerKeyID,
		FingerprintSHA256: hex.EncodeToString(sum[:]),
		CreatedAt:         now,
	}
	kind := pki.KindDevice
	if r.profile.kind == KindService {
		kind = pki.KindService
	}
	dev := pki.Device{ID: r.deviceID, Kind: kind, Status: pki.DeviceActive, Metadata: r.metadata, CreatedAt: now, UpdatedAt: now}
	details := map[string]string{
		"device_id":   r.deviceID,
		"profile":     r.profile.name,
		"fingerprint": rec.FingerprintSHA256,
		"not_after":   rec.NotAfter.Format(time.RFC3339),
	}
	for k, v := range r.details {
		details[k] = v
	}
	if len(r.names) > 0 {
		details["names"] = strings.Join(r.names, ",")
	}
	ev := pki.AuditEvent{Time: now, Actor: r.actor, Action: r.action, Target: string(rec.Serial), Details: details}
	return rec, dev, ev
}

// newSerial draws 128 bits from crypto/rand (CA/B BR want at least 64 bits
// of CSPRNG output) and redraws zero, so the serial is positive and at most
// 17 DER octets, within RFC 5280's 20.
func newSerial() *big.Int {
	var b [16]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n
		}
	}
}

// parseCSR reads a PEM or DER PKCS#10 request, checks the key against the
// profile and then the signature (proof of possession). Every failure is
// pki.Invalid. The key is checked first because "RSA-1024 refused" is more
// useful to a factory engineer than a signature error.
func parseCSR(b []byte, p *profile) (*x509.CertificateRequest, error) {
	switch {
	case len(b) == 0:
		return nil, pki.Errorf(pki.Invalid, "the CSR is empty")
	case len(b) > maxCSRBytes:
		return nil, pki.Errorf(pki.Invalid, "the CSR is larger than %d bytes", maxCSRBytes)
	}
	der := b
	if block, rest := pem.Decode(b); block != nil {
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, pki.Errorf(pki.Invalid, "the CSR is a PEM block of type %q, want CERTIFICATE REQUEST", truncate(block.Type, 40))
		}
		if len(bytes.TrimSpace(rest)) > 0 {
			return nil, pki.Errorf(pki.Invalid, "the CSR has data after its PEM block")
		}
		der = block.Bytes
	} else if bytes.Contains(b, []byte("-----BEGIN")) {
		return nil, pki.Errorf(pki.Invalid, "the CSR is not well-formed PEM")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, pki.Wrap(pki.Invalid, err, "the CSR is not a valid PKCS#10 certificate request")
	}
	if err := p.checkKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, pki.Wrap(pki.Invalid, err, "the CSR's signature does not verify (proof of possession failed)")
	}
	return csr, nil
}

// serviceNames checks and canonicalises a service certificate's names:
// DNS names or IP addresses, no duplicates, at most pki.MaxServiceNames.
func serviceNames(names []string) ([]string, error) {
	if len(names) > pki.MaxServiceNames {
		return nil, pki.Errorf(pki.Invalid, "at most %d names are allowed", pki.MaxServiceNames)
	}
	out := make([]string, 0, len(names))
	seen := map[string]bool{}
	for _, n := range names {
		c, err := pki.ValidateServiceName(n)
		if err != nil {
			return nil, err
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out, nil
}

// VerifyClient returns the stored record of a certificate a client
// presented over TLS (not verified by the handshake): it must be one this
// CA issued, stored with the same bytes, not revoked and not expired.
// Anything else is pki.Unauthenticated.
func (c *CA) VerifyClient(ctx context.Context, cert *x509.Certificate) (pki.CertRecord, error) {
	refuse := pki.Errorf(pki.Unauthenticated, "the client certificate is not a valid certificate of this CA")
	inter := c.h.Intermediate()
	if cert == nil || cert.SerialNumber == nil || cert.SerialNumber.Sign() <= 0 ||
		!bytes.Equal(cert.RawIssuer, inter.RawSubject) || cert.CheckSignatureFrom(inter) != nil {
		return pki.CertRecord{}, refuse
	}
	rec, err := c.store.GetCertificate(ctx, pki.NewSerial(cert.SerialNumber))
	if errors.Is(err, pki.NotFound) {
		return pki.CertRecord{}, refuse
	}
	if err != nil {
		return pki.CertRecord{}, fmt.Errorf("verify client: %w", err)
	}
	now := c.clock.Now()
	if !bytes.Equal(rec.DER, cert.Raw) || rec.StatusAt(now) != pki.CertValid || now.Before(rec.NotBefore) {
		return pki.CertRecord{}, refuse
	}
	return rec, nil
}
