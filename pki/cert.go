package pki

import (
	"crypto/x509"
	"time"
)

// CertStatus is a certificate's stored state. Expiry is not stored: it follows
// from NotAfter and the clock (see CertRecord.StatusAt).
type CertStatus string

const (
	// CertValid: issued and not revoked (possibly expired; see StatusAt).
	CertValid CertStatus = "valid"
	// CertRevoked: revoked; RevokedAt and Reason say when and why.
	CertRevoked CertStatus = "revoked"
	// CertExpired is never stored; StatusAt reports it for a valid certificate past NotAfter.
	CertExpired CertStatus = "expired"
)

// CertRecord is everything fleetpki keeps about one issued certificate.
type CertRecord struct {
	Serial    Serial
	DeviceID  string
	Profile   string
	Status    CertStatus
	NotBefore time.Time
	NotAfter  time.Time
	// DER is the certificate as issued.
	DER []byte
	// IssuerKeyID is the issuing CA's subject key identifier (hex), so a
	// re-keyed or second issuing CA can share one store.
	IssuerKeyID string
	// FingerprintSHA256 is the lower-case hex SHA-256 of DER.
	FingerprintSHA256 string
	RevokedAt         *time.Time
	Reason            RevocationReason
	CreatedAt         time.Time
}

// StatusAt reports the status at time t, turning a valid certificate past its
// NotAfter into CertExpired.
func (c CertRecord) StatusAt(t time.Time) CertStatus {
	if c.Status == CertValid && !t.Before(c.NotAfter) {
		return CertExpired
	}
	return c.Status
}

// RevocationEvent tells subscribers (OCSP responder, CRL updater, broker) that
// a certificate was revoked. It is published after the revocation committed.
type RevocationEvent struct {
	Serial      Serial
	DeviceID    string
	IssuerKeyID string
	RevokedAt   time.Time
	Reason      RevocationReason
}

// CRL is a signed certificate revocation list as stored.
type CRL struct {
	IssuerKeyID string
	Number      int64
	DER         []byte
	ThisUpdate  time.Time
	NextUpdate  time.Time
}

// RevokedCert is one line of a CRL: what a revocation list needs of a
// revoked certificate and nothing more.
type RevokedCert struct {
	Serial    Serial
	RevokedAt time.Time
	Reason    RevocationReason
}

// OCSPLookup is what an OCSP answer about one certificate needs, read at
// once: its status and revocation, and its stored response for the asked
// CertID hash (Response.DER is nil when there is none).
type OCSPLookup struct {
	Status    CertStatus
	RevokedAt *time.Time
	Reason    RevocationReason
	Response  OCSPResponse
}

// OCSPResponse is a pre-signed OCSP response for one certificate and one
// CertID hash algorithm, as stored.
type OCSPResponse struct {
	Serial Serial
	// Hash names the CertID hash algorithm: "sha1" or "sha256".
	Hash string
	// Status is the certificate's stored status when the response was signed.
	Status     CertStatus
	DER        []byte
	ThisUpdate time.Time
	NextUpdate time.Time
}

// CertPool is a pool of certs.
func CertPool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// NoticeState is where an expiry notice stands.
type NoticeState string

// The states of an expiry notice.
const (
	NoticePending   NoticeState = "pending"
	NoticeDelivered NoticeState = "delivered"
	// NoticeDead: every attempt failed; kept as a dead letter.
	NoticeDead NoticeState = "dead"
)

// ExpiryNotice is the announcement, to a webhook, that a device's
// certificate is about to expire.
type ExpiryNotice struct {
	Serial      Serial
	DeviceID    string
	NotAfter    time.Time
	State       NoticeState
	Attempts    int
	NextAttempt time.Time
	LastError   string
	UpdatedAt   time.Time
}
