package ca

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// EnrollStore keeps the idempotency keys of enrollment requests and tells
// whether a device exists.
type EnrollStore interface {
	GetDevice(ctx context.Context, id string) (pki.Device, error)
	ClaimIdempotencyKey(ctx context.Context, c pki.IdempotencyClaim) (pki.Idempotency, pki.Serial, error)
	CompleteIdempotencyKey(ctx context.Context, credID, key string, serial pki.Serial) error
	ReleaseIdempotencyKey(ctx context.Context, credID, key string) error
}

// Idempotency keys live for a day; a key claimed by a request that then
// vanished (a crash between claim and completion) is taken over after
// idempotencyAbandon; a request meeting a key in progress waits up to
// idempotencyWait for it to finish.
const (
	idempotencyTTL     = 24 * time.Hour
	idempotencyAbandon = 2 * time.Minute
	idempotencyWait    = 10 * time.Second
	maxIdempotencyKey  = 255
)

// CredentialUses spends one use of a limited enrollment credential
// (accounts.Credentials).
type CredentialUses interface {
	UseCredential(ctx context.Context, id string) error
}

// Enroller applies an enrollment credential's rules (profiles, device-id
// pattern, uses) to a factory line's request and has the CA issue.
type Enroller struct {
	ca   *CA
	uses CredentialUses
	idem EnrollStore
}

// NewEnroller returns an Enroller over the CA, the credentials' use counter
// and the store of idempotency keys.
func NewEnroller(c *CA, uses CredentialUses, idem EnrollStore) *Enroller {
	return &Enroller{ca: c, uses: uses, idem: idem}
}

// EnrollIdempotent is Enroll under an idempotency key (per credential): the
// first request with the key issues; a retry with the same request returns
// that certificate (Issued.Replayed); the same key with another request is
// pki.Conflict. Concurrent identical requests wait for the first, so they
// all get one certificate.
func (e *Enroller) EnrollIdempotent(ctx context.Context, cred pki.Credential, key string, req IssueRequest) (*Issued, error) {
	if key == "" {
		return e.Enroll(ctx, cred, req)
	}
	if len(key) > maxIdempotencyKey || strings.IndexFunc(key, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
		return nil, pki.Errorf(pki.Invalid, "the Idempotency-Key must be 1 to %d printable ASCII characters", maxIdempotencyKey)
	}
	hash := requestHash(req)
	deadline := time.Now().Add(idempotencyWait)
	for {
		now := e.ca.clock.Now()
		state, serial, err := e.idem.ClaimIdempotencyKey(ctx, pki.IdempotencyClaim{CredentialID: cred.ID, Key: key,
			RequestHash: hash, Now: now, ExpireBefore: now.Add(-idempotencyTTL), AbandonBefore: now.Add(-idempotencyAbandon)})
		if err != nil {
			return nil, fmt.Errorf("idempotency key: %w", err)
		}
		switch state {
		case pki.IdempotencyDone:
			return e.replay(ctx, serial)
		case pki.IdempotencyClaimed:
			iss, err := e.Enroll(ctx, cred, req)
			if err != nil {
				if rerr := e.idem.ReleaseIdempotencyKey(context.WithoutCancel(ctx), cred.ID, key); rerr != nil {
					e.ca.log.WarnContext(ctx, "release idempotency key", "err", rerr)
				}
				return nil, err
			}
			if err := e.idem.CompleteIdempotencyKey(context.WithoutCancel(ctx), cred.ID, key, iss.Record.Serial); err != nil {
				// The certificate is issued and stored; a retry will find the
				// key abandoned and issue again, which the caller can live with.
				e.ca.log.WarnContext(ctx, "complete idempotency key", "serial", iss.Record.Serial, "err", err)
			}
			return iss, nil
		}
		if time.Now().After(deadline) {
			return nil, pki.Errorf(pki.Conflict, "a request with this idempotency key is still in progress; retry later")
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("idempotency key: %w", ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// replay returns the certificate issued earlier under an idempotency key.
func (e *Enroller) replay(ctx context.Context, serial pki.Serial) (*Issued, error) {
	rec, err := e.ca.store.GetCertificate(ctx, serial)
	if err != nil {
		return nil, fmt.Errorf("idempotent replay of %s: %w", serial, err)
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return nil, fmt.Errorf("idempotent replay of %s: %w", serial, err)
	}
	return &Issued{Record: rec, Certificate: cert, Chain: e.ca.h.Chain(), Replayed: true}, nil
}

// requestHash identifies a request's content for idempotency: SHA-256 over a
// length-prefixed encoding of every field (metadata sorted by key).
func requestHash(req IssueRequest) []byte {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	profile := req.Profile
	if profile == "" {
		profile = DefaultProfile
	}
	field([]byte(req.DeviceID))
	field([]byte(profile))
	field(req.CSR)
	field([]byte(strings.Join(req.Names, "\x00")))
	keys := slices.Sorted(maps.Keys(req.Metadata))
	field([]byte(strconv.Itoa(len(keys))))
	for _, k := range keys {
		field([]byte(k))
		field([]byte(req.Metadata[k]))
	}
	return h.Sum(nil)
}

// Enroll issues a certificate for req under cred. The credential's rules
// are checked first, then the request itself, and only then is one use of
// the credential spent: bad input spends nothing.
func (e *Enroller) Enroll(ctx context.Context, cred pki.Credential, req IssueRequest) (*Issued, error) {
	profile := req.Profile
	if profile == "" {
		profile = DefaultProfile
	}
	allowed := cred.Profiles
	if len(allowed) == 0 {
		allowed = []string{DefaultProfile}
	}
	if !slices.Contains(allowed, profile) {
		return nil, pki.Errorf(pki.Forbidden, "the credential may not enroll with profile %q", profile)
	}
	if cred.DevicePattern != "" {
		re, err := pki.CompileDevicePattern(cred.DevicePattern)
		if err != nil {
			return nil, fmt.Errorf("credential %s: %w", cred.ID, err)
		}
		if err := pki.ValidateDeviceID(req.DeviceID); err != nil {
			return nil, err
		}
		if !re.MatchString(req.DeviceID) {
			return nil, pki.Errorf(pki.Forbidden, "device id %q does not match the credential's pattern", req.DeviceID)
		}
	}
	if p, err := e.ca.profile(profile); err == nil && p.kind == KindService {
		if err := checkNames(cred, req.Names); err != nil {
			return nil, err
		}
	}
	req.Profile = profile
	req.Actor.CredentialID = cred.ID
	p, csr, err := e.ca.check(ctx, req)
	if err != nil {
		return nil, err
	}
	if cred.NoReenroll {
		// Checked, not locked: two first enrollments of one id racing
		// under such a credential could both pass; its purpose is to stop
		// a leaked credential from re-keying existing devices.
		_, err := e.idem.GetDevice(ctx, req.DeviceID)
		switch {
		case err == nil:
			return nil, pki.Errorf(pki.Conflict, "device %q is enrolled already and this credential does not re-enroll", req.DeviceID)
		case !errors.Is(err, pki.NotFound):
			return nil, fmt.Errorf("enroll %q: %w", req.DeviceID, err)
		}
	}
	// A credential with a use limit spends its use before signing, in its
	// own conditional update, so the last use goes to exactly one caller.
	// An unlimited one is counted by the store in the certificate's own
	// transaction (the issue event names the credential): no extra commit.
	if cred.MaxUses > 0 {
		if err := e.uses.UseCredential(ctx, cred.ID); err != nil {
			return nil, err
		}
	}
	names, err := serviceNames(req.Names)
	if err != nil {
		return nil, err
	}
	iss, err := e.ca.sign(ctx, signRequest{deviceID: req.DeviceID, names: names, profile: p, csr: csr, metadata: req.Metadata,
		actor: req.Actor, action: pki.ActionCertificateIssue})
	if err != nil {
		if errors.Is(err, pki.Invalid) {
			return nil, err
		}
		return nil, fmt.Errorf("enroll %q: %w", req.DeviceID, err)
	}
	return iss, nil
}

// checkNames applies a credential's name pattern to a service request:
// every DNS name and IP address must match it (anchored); a credential
// without one may not request service certificates at all.
func checkNames(cred pki.Credential, names []string) error {
	if cred.NamePattern == "" {
		return pki.Errorf(pki.Forbidden, "the credential may not request names (it has no name pattern)")
	}
	re, err := pki.CompileDevicePattern(cred.NamePattern)
	if err != nil {
		return fmt.Errorf("credential %s: %w", cred.ID, err)
	}
	canon, err := serviceNames(names)
	if err != nil {
		return err
	}
	for _, n := range canon {
		if !re.MatchString(n) {
			return pki.Errorf(pki.Forbidden, "name %q does not match the credential's name pattern", n)
		}
	}
	return nil
}
