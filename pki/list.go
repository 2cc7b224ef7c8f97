package pki

import "time"

// Page is one page of a list, with the opaque cursor of the next page
// ("" when this is the last).
type Page[T any] struct {
	Items []T
	Next  string
}

// MaxLimit caps a page's size; DefaultLimit is used when a filter asks for 0.
const (
	MaxLimit     = 500
	DefaultLimit = 50
)

// CertFilter selects certificates. Zero fields do not filter.
type CertFilter struct {
	DeviceID string
	// Status filters by stored status (valid or revoked); CertExpired selects
	// valid certificates whose NotAfter is before Now.
	Status CertStatus
	Now    time.Time
	// ExpiringBefore selects the valid certificates that expire after Now
	// and by this time, of devices that hold no valid certificate lasting
	// longer (a renewed device is not expiring).
	ExpiringBefore time.Time
	Limit          int
	Cursor         string
}

// DeviceFilter selects devices. Zero fields do not filter.
type DeviceFilter struct {
	Status DeviceStatus
	// Kind selects devices or services; "" lists both.
	Kind     DeviceKind
	IDPrefix string
	// MetaKey and MetaValue select devices whose metadata has this key with this value.
	MetaKey   string
	MetaValue string
	Limit     int
	Cursor    string
}

// Idempotency is the state of an idempotency key when a request claims it.
type Idempotency int

const (
	// IdempotencyClaimed: the key is new (or its earlier use lapsed); the
	// caller does the work and then completes or releases the key.
	IdempotencyClaimed Idempotency = iota
	// IdempotencyDone: the work was done; the key names its result.
	IdempotencyDone
	// IdempotencyInProgress: another request holds the key right now.
	IdempotencyInProgress
)

// IdempotencyClaim asks to claim an idempotency key for a request.
type IdempotencyClaim struct {
	CredentialID string
	Key          string
	RequestHash  []byte
	Now          time.Time
	// ExpireBefore: a key created before it is forgotten, whatever it held.
	ExpireBefore time.Time
	// AbandonBefore: a key still in progress that was claimed before it is
	// taken over (its holder crashed or gave up).
	AbandonBefore time.Time
}
