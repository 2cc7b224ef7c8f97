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
	Limit  int
	Cursor string
}

// DeviceFilter selects devices. Zero fields do not filter.
type DeviceFilter struct {
	Status   DeviceStatus
	IDPrefix string
	// MetaKey and MetaValue select devices whose metadata has this key with this value.
	MetaKey   string
	MetaValue string
	Limit     int
	Cursor    string
}
