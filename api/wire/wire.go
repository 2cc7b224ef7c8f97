// Package wire holds the JSON bodies of fleetpki's REST API (v1): what the
// server answers and what clients send. The server (package api) and the Go
// client (package client) both use these types, so the two cannot drift.
package wire

import (
	"fmt"

	"github.com/fleetpki/fleetpki/pki"
)

// Problem is an RFC 9457 problem details object. Code is fleetpki's stable,
// machine-readable name for the failure; clients switch on it, not on Detail.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code"`
	// RequestID ties the answer to the server's log line.
	RequestID string `json:"request_id,omitempty"`
}

func (p *Problem) Error() string {
	return fmt.Sprintf("fleetpki: %d %s: %s", p.Status, p.Code, p.Detail)
}

// EnrollRequest is the body of POST /api/v1/enroll.
type EnrollRequest struct {
	DeviceID string            `json:"device_id"`
	CSR      string            `json:"csr"`
	Profile  string            `json:"profile,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// DNSNames and IPAddresses name a service (profiles server and broker).
	DNSNames    []string `json:"dns_names,omitempty"`
	IPAddresses []string `json:"ip_addresses,omitempty"`
}

// RenewRequest is the body of POST /api/v1/renew.
type RenewRequest struct {
	CSR string `json:"csr"`
}

// Issued is the answer to a successful enroll or renew.
type Issued struct {
	DeviceID    string `json:"device_id"`
	Serial      string `json:"serial"`
	Certificate string `json:"certificate"`
	// Chain is PEM, the issuing CA first.
	Chain     string `json:"chain"`
	NotBefore string `json:"not_before"`
	NotAfter  string `json:"not_after"`
	OCSPURL   string `json:"ocsp_url"`
	CRLURL    string `json:"crl_url"`
}

// Device is a device as the admin API shows it.
type Device struct {
	ID        string            `json:"id"`
	Kind      pki.DeviceKind    `json:"kind"`
	Status    pki.DeviceStatus  `json:"status"`
	Metadata  map[string]string `json:"metadata"`
	CreatedAt string            `json:"created_at"`
	UpdatedAt string            `json:"updated_at"`
}

// CertRecord is a certificate as the admin API shows it.
type CertRecord struct {
	Serial            string         `json:"serial"`
	DeviceID          string         `json:"device_id"`
	Profile           string         `json:"profile"`
	Status            pki.CertStatus `json:"status"`
	NotBefore         string         `json:"not_before"`
	NotAfter          string         `json:"not_after"`
	FingerprintSHA256 string         `json:"fingerprint_sha256"`
	RevokedAt         string         `json:"revoked_at,omitempty"`
	RevocationReason  string         `json:"revocation_reason,omitempty"`
	Certificate       string         `json:"certificate,omitempty"`
}

// Page is one page of a list.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// RevokeRequest is the body of a revocation (the reason's RFC 5280 name).
type RevokeRequest struct {
	Reason string `json:"reason"`
}

// DeviceRevocation answers POST /api/v1/devices/{id}/revoke.
type DeviceRevocation struct {
	DeviceID string       `json:"device_id"`
	Revoked  []CertRecord `json:"revoked"`
}

// CredentialRequest is the body of POST /api/v1/credentials.
type CredentialRequest struct {
	Name          string   `json:"name"`
	Profiles      []string `json:"profiles,omitempty"`
	DevicePattern string   `json:"device_pattern,omitempty"`
	ExpiresIn     string   `json:"expires_in,omitempty"` // a Go duration, e.g. "720h"
	MaxUses       int64    `json:"max_uses,omitempty"`
	NoReenroll    bool     `json:"no_reenroll,omitempty"`
	// NamePattern lets the credential request service certificates (server,
	// broker profiles) for DNS names and IPs matching it.
	NamePattern string `json:"name_pattern,omitempty"`
}

// Credential is an enrollment credential as the admin API shows it.
type Credential struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Profiles      []string `json:"profiles"`
	DevicePattern string   `json:"device_pattern"`
	ExpiresAt     string   `json:"expires_at,omitempty"`
	MaxUses       int64    `json:"max_uses"`
	NoReenroll    bool     `json:"no_reenroll"`
	NamePattern   string   `json:"name_pattern"`
	Uses          int64    `json:"uses"`
	Disabled      bool     `json:"disabled"`
	CreatedAt     string   `json:"created_at"`
	// Secret is set only in the answer to its creation: it is not kept.
	Secret string `json:"secret,omitempty"`
}

// AuditEvent is one event of the audit log.
type AuditEvent struct {
	Seq          int64             `json:"seq"`
	Time         string            `json:"time"`
	Actor        string            `json:"actor"`
	CredentialID string            `json:"credential_id,omitempty"`
	RemoteAddr   string            `json:"remote_addr,omitempty"`
	RequestID    string            `json:"request_id,omitempty"`
	Action       string            `json:"action"`
	Target       string            `json:"target"`
	Details      map[string]string `json:"details,omitempty"`
	Hash         string            `json:"hash"`
}

// Selector selects devices by a metadata key and value.
type Selector struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// BulkPreviewRequest is the body of POST /api/v1/revocations:bulk-preview.
type BulkPreviewRequest struct {
	Selector Selector `json:"selector"`
}

// BulkPreview answers a preview: what a bulk revocation would revoke now.
type BulkPreview struct {
	Selector     Selector `json:"selector"`
	Devices      int      `json:"devices"`
	Certificates int      `json:"certificates"`
	// SetHash names the set; the revocation must carry it.
	SetHash string   `json:"set_hash"`
	Sample  []string `json:"sample"`
}

// BulkRevokeRequest is the body of POST /api/v1/revocations:bulk.
type BulkRevokeRequest struct {
	Selector Selector `json:"selector"`
	SetHash  string   `json:"set_hash"`
	Reason   string   `json:"reason"`
}

// RevocationJob is a bulk revocation's state.
type RevocationJob struct {
	ID       string   `json:"id"`
	Selector Selector `json:"selector"`
	SetHash  string   `json:"set_hash"`
	Reason   string   `json:"reason"`
	Created  string   `json:"created"`
	Revoked  int64    `json:"revoked"`
	Done     bool     `json:"done"`
	Finished string   `json:"finished,omitempty"`
}
