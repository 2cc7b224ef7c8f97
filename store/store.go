// Package store declares fleetpki's persistence interface. Two backends
// implement it: store/postgres (production, shared by replicas) and
// store/sqlite (embedded default); store/storetest is the conformance suite
// both must pass.
//
// Policy: every lifecycle change and its audit event commit in one
// transaction; revocation is a conditional update (exactly one caller wins);
// times are stored in UTC with microsecond precision; serials are stored in
// their canonical pki.Serial form and are unique by constraint.
package store

import (
	"context"
	"io"
	"iter"
	"log/slog"
	"time"

	"github.com/fleetpki/fleetpki/migrations"
	"github.com/fleetpki/fleetpki/pki"
)

// Store is the whole persistence interface. It is large because its
// conformance suite needs all of it; consumers declare the few methods they use.
type Store interface {
	// InsertCertificate stores a newly issued certificate, creates its device
	// (or updates the device's metadata and marks it active) and appends the
	// audit event, all in one transaction. When the event's actor names an
	// enrollment credential without a use limit, the credential's use count
	// grows in the same transaction (limited ones count through
	// UseCredential, before issuing). A duplicate serial returns a
	// pki.Conflict error and changes nothing.
	InsertCertificate(ctx context.Context, cert pki.CertRecord, dev pki.Device, ev pki.AuditEvent) error
	// GetCertificate returns the certificate with this serial, or pki.NotFound.
	GetCertificate(ctx context.Context, serial pki.Serial) (pki.CertRecord, error)
	// ListCertificates lists certificates, newest first.
	ListCertificates(ctx context.Context, f CertFilter) (Page[pki.CertRecord], error)
	// RevokeCertificate marks the certificate revoked if it is not already, and
	// appends ev in the same transaction. changed is false (and ev not written)
	// when it was already revoked; the returned record is the stored state.
	// An unknown serial is pki.NotFound.
	RevokeCertificate(ctx context.Context, serial pki.Serial, reason pki.RevocationReason, at time.Time, ev pki.AuditEvent) (rec pki.CertRecord, changed bool, err error)
	// RevokeDevice revokes every certificate of the device that is neither
	// revoked nor expired at time at, marks the device revoked and appends ev,
	// in one transaction. It returns the certificates it revoked (none when all
	// were revoked already, and then ev is not written). An unknown device is
	// pki.NotFound.
	RevokeDevice(ctx context.Context, deviceID string, reason pki.RevocationReason, at time.Time, ev pki.AuditEvent) ([]pki.CertRecord, error)
	// RevokedCerts yields the revoked certificates of one issuer whose
	// NotAfter is after notAfterAfter and that were revoked at or after
	// revokedSince (zero: all), in serial order, streaming them from the
	// database (a CRL may list millions). An error ends the sequence.
	RevokedCerts(ctx context.Context, issuerKeyID string, notAfterAfter, revokedSince time.Time) iter.Seq2[pki.RevokedCert, error]
	// PreviewMatching returns what a bulk-revocation selector matches at
	// now: the devices with valid, unexpired certificates, the certificates,
	// and the set's hash (SHA-256 over sorted "device serial" lines).
	PreviewMatching(ctx context.Context, sel pki.Selector, now time.Time) (pki.MatchSet, error)
	// CreateRevocationJob records a bulk revocation, with ev, before its
	// first batch.
	CreateRevocationJob(ctx context.Context, job pki.RevocationJob, ev pki.AuditEvent) error
	// RevokeJobBatch revokes up to limit certificates of the job's set
	// (valid, unexpired, created at or before job.Created) in one
	// transaction, one audit event per certificate; done when none was left
	// (the job is then marked finished).
	RevokeJobBatch(ctx context.Context, job pki.RevocationJob, at time.Time, limit int) (revoked []pki.CertRecord, done bool, err error)
	// OpenRevocationJobs lists the unfinished bulk revocations, oldest first.
	OpenRevocationJobs(ctx context.Context) ([]pki.RevocationJob, error)
	// GetRevocationJob returns one job, or pki.NotFound.
	GetRevocationJob(ctx context.Context, id string) (pki.RevocationJob, error)
	// GetDevice returns the device, or pki.NotFound.
	GetDevice(ctx context.Context, id string) (pki.Device, error)
	// ListDevices lists devices in id order.
	ListDevices(ctx context.Context, f DeviceFilter) (Page[pki.Device], error)

	// CreateUser stores a user and the audit event; a taken name is pki.Conflict.
	CreateUser(ctx context.Context, u pki.User, ev pki.AuditEvent) error
	// GetUser returns the user by name, or pki.NotFound.
	GetUser(ctx context.Context, name string) (pki.User, error)
	// ListUsers lists all users by name.
	ListUsers(ctx context.Context) ([]pki.User, error)
	// UpdateUser sets a user's disabled flag and, unless passwordHash is
	// empty, the password hash, with the audit event; pki.NotFound if missing.
	UpdateUser(ctx context.Context, name string, disabled bool, passwordHash string, ev pki.AuditEvent) error
	// CreateAPIToken stores a token and the audit event.
	CreateAPIToken(ctx context.Context, t pki.APIToken, ev pki.AuditEvent) error
	// GetAPIToken returns the token with this hash and its user, or pki.NotFound.
	GetAPIToken(ctx context.Context, hash []byte) (pki.APIToken, pki.User, error)

	// CreateCredential stores an enrollment credential and the audit event; a
	// taken name is pki.Conflict.
	CreateCredential(ctx context.Context, c pki.Credential, ev pki.AuditEvent) error
	// GetCredentialByHash returns the credential whose secret hashes to hash, or pki.NotFound.
	GetCredentialByHash(ctx context.Context, hash []byte) (pki.Credential, error)
	// ListCredentials lists credentials by name.
	ListCredentials(ctx context.Context) ([]pki.Credential, error)
	// DisableCredential disables a credential and appends ev; idempotent; pki.NotFound if unknown.
	DisableCredential(ctx context.Context, id string, ev pki.AuditEvent) error
	// UseCredential counts one use of the credential if it still has uses
	// left (MaxUses 0 is unlimited), is not disabled and not expired at time
	// at; otherwise it returns pki.Forbidden and counts nothing.
	UseCredential(ctx context.Context, id string, at time.Time) error

	// ClaimIdempotencyKey claims a key of a credential for a request. A new
	// key, an expired one, or an abandoned one in progress is claimed
	// (IdempotencyClaimed); a key whose work is done returns its serial
	// (IdempotencyDone); a key another request holds is
	// IdempotencyInProgress. The same key with another request hash is
	// pki.Conflict.
	ClaimIdempotencyKey(ctx context.Context, c pki.IdempotencyClaim) (pki.Idempotency, pki.Serial, error)
	// CompleteIdempotencyKey records the serial issued under a claimed key.
	CompleteIdempotencyKey(ctx context.Context, credID, key string, serial pki.Serial) error
	// ReleaseIdempotencyKey forgets a claimed key whose work failed, so that a retry may do it.
	ReleaseIdempotencyKey(ctx context.Context, credID, key string) error

	// AppendAudit appends an event that records no other change (e.g. a failed login).
	AppendAudit(ctx context.Context, ev pki.AuditEvent) error
	// ListAudit lists audit events in ascending Seq order, starting after
	// Seq afterSeq, at most limit of them.
	ListAudit(ctx context.Context, afterSeq int64, limit int) ([]pki.AuditEvent, error)
	// ListAuditRecent lists the newest events first, at most limit; with
	// targets (at most 1,000), only events about them.
	ListAuditRecent(ctx context.Context, targets []string, limit int) ([]pki.AuditEvent, error)

	// NextCRLNumber returns the next CRL number of the issuer: 1 the first
	// time, then strictly greater on every call, even across processes.
	NextCRLNumber(ctx context.Context, issuerKeyID string) (int64, error)

	// SaveCRL stores crl as its issuer's latest unless a CRL with a number at
	// least as high is stored already (then it returns saved=false).
	SaveCRL(ctx context.Context, crl pki.CRL) (saved bool, err error)
	// LatestCRL returns the issuer's latest stored CRL, or pki.NotFound.
	LatestCRL(ctx context.Context, issuerKeyID string) (pki.CRL, error)
	// LatestCRLNumber returns the number of the issuer's latest stored CRL
	// (0 when there is none), without reading the CRL itself.
	LatestCRLNumber(ctx context.Context, issuerKeyID string) (int64, error)

	// SaveOCSPResponses stores pre-signed OCSP responses; a stored revoked
	// response is only ever replaced by another revoked one.
	SaveOCSPResponses(ctx context.Context, rs []pki.OCSPResponse) error
	// GetOCSPResponse returns the stored response for serial and CertID hash
	// ("sha1" or "sha256"), or pki.NotFound.
	GetOCSPResponse(ctx context.Context, serial pki.Serial, hash string) (pki.OCSPResponse, error)
	// QueueExpiryNotices records a pending notice for each certificate
	// expiring after now and by before (pki.CertFilter.ExpiringBefore's
	// selection), once per certificate, and returns how many it added.
	QueueExpiryNotices(ctx context.Context, now, before time.Time) (int64, error)
	// ExpiryNotices lists notices in a state, oldest next attempt first;
	// with a non-zero due, only those due by then.
	ExpiryNotices(ctx context.Context, state pki.NoticeState, due time.Time, max int) ([]pki.ExpiryNotice, error)
	// UpdateExpiryNotice records an attempt's outcome.
	UpdateExpiryNotice(ctx context.Context, e pki.ExpiryNotice) error
	// CountExpiring counts what QueueExpiryNotices would select.
	CountExpiring(ctx context.Context, now, before time.Time) (int64, error)
	// LookupOCSP returns, in one read, each issued serial's status and its
	// stored response for hash (DER nil when none); serials never issued
	// are absent.
	LookupOCSP(ctx context.Context, hash string, serials []pki.Serial) (map[pki.Serial]pki.OCSPLookup, error)
	// OCSPStale lists, oldest first after the cursor afterSeq (0 to start),
	// up to limit unexpired certificates of the issuer whose response for
	// hash is missing, signed before signedBefore, or out of date with the
	// certificate's status; next is the cursor for the following call.
	OCSPStale(ctx context.Context, issuerKeyID, hash string, signedBefore, notAfterAfter time.Time, afterSeq int64, limit int) (recs []pki.CertRecord, next int64, err error)

	// CreateWebSession stores an admin UI session; GetWebSession returns it
	// by id hash (or pki.NotFound); TouchWebSession records activity;
	// DeleteWebSession ends it (and sweeps expired ones).
	CreateWebSession(ctx context.Context, s pki.WebSession) error
	GetWebSession(ctx context.Context, idHash string) (pki.WebSession, error)
	TouchWebSession(ctx context.Context, idHash string, at time.Time) error
	DeleteWebSession(ctx context.Context, idHash string) error
	// DeleteUserWebSessions ends every session of the user except the one
	// whose id hash is keep ("" keeps none).
	DeleteUserWebSessions(ctx context.Context, userName, keep string) error
	// Stats counts devices and certificates for the dashboard, with the
	// certificates issued on each of the last days UTC days.
	Stats(ctx context.Context, now time.Time, days int) (pki.Stats, error)

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}

// Backend is a store that the composition root opens: it also migrates its
// schema, tells of revocations that any process sharing it makes, and
// elects one process among those sharing it for a role (such as generating
// an issuer's CRLs). Both backends are one; nothing outside cmd needs more
// than Store.
type Backend interface {
	Store
	// Migrate applies pending migrations; a database migrated by a newer
	// fleetpki is refused (migrations.ErrNewerSchema), as it is at Open.
	Migrate(ctx context.Context) error
	// MigrationStatus lists the migrations this binary knows, applied or
	// pending, and the database's schema version.
	MigrationStatus(ctx context.Context) ([]migrations.Migration, int64, error)
	// MigrateTo applies the migrations up to version (a restore migrates
	// to its dump's version, loads it, then migrates the rest).
	MigrateTo(ctx context.Context, version int64) error
	// Dump writes every row in one consistent snapshot while the database
	// keeps serving; Load reads a dump into an empty database (migrated to
	// the dump's version) and raises every CRL number by crlGap.
	Dump(ctx context.Context, w io.Writer) (DumpInfo, error)
	Load(ctx context.Context, r io.Reader, crlGap int64) error
	// ListenRevocations calls fn with every serial that any process sharing
	// the database revokes (this one included, possibly more than once),
	// until ctx ends: Postgres LISTEN/NOTIFY, SQLite polling the file.
	ListenRevocations(ctx context.Context, log *slog.Logger, fn func(pki.Serial)) error
	// Elector returns the elector of a named role; on SQLite (one process
	// per file) this process always holds it.
	Elector(name string) Elector
}

// DumpInfo describes a dump: rows per table and the CRL numbers it holds.
type DumpInfo struct {
	Rows       map[string]int64 `json:"rows"`
	CRLNumbers map[string]int64 `json:"crl_numbers"`
}

// Elector tells whether this process holds a role among the processes
// sharing the database.
type Elector interface {
	// IsLeader reports whether this process holds the role, taking it when
	// nobody does.
	IsLeader(ctx context.Context) (bool, error)
	// Close gives the role up.
	Close() error
}

// The list types live in pki so that the CA can offer lists to the API
// without either knowing this package; these aliases keep store's own names.
type (
	// Page is one page of a list; see pki.Page.
	Page[T any] = pki.Page[T]
	// CertFilter selects certificates; see pki.CertFilter.
	CertFilter = pki.CertFilter
	// DeviceFilter selects devices; see pki.DeviceFilter.
	DeviceFilter = pki.DeviceFilter
)

// Page size limits; see pki.MaxLimit and pki.DefaultLimit.
const (
	MaxLimit     = pki.MaxLimit
	DefaultLimit = pki.DefaultLimit
)

// Options configure opening a store.
type Options struct {
	// Logger receives migration and background messages; nil discards them.
	Logger *slog.Logger
	// NoMigrate opens without applying pending migrations.
	NoMigrate bool
}
