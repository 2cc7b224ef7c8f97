package pki

import "time"

// Selector selects devices for a bulk revocation: those whose metadata has
// the key with the value (a production lot, a firmware batch).
type Selector struct {
	MetaKey   string `json:"key"`
	MetaValue string `json:"value"`
}

// Validate refuses an empty or malformed selector: a bulk revocation must
// never match every device by accident.
func (s Selector) Validate() error {
	if s.MetaKey == "" || s.MetaValue == "" {
		return Errorf(Invalid, "a bulk revocation selects devices by a metadata key and value, both required")
	}
	return ValidateMetadata(map[string]string{s.MetaKey: s.MetaValue})
}

func (s Selector) String() string { return s.MetaKey + "=" + s.MetaValue }

// MatchSet is what a selector matches now: the devices with at least one
// valid, unexpired certificate, and those certificates.
type MatchSet struct {
	Devices      int
	Certificates int
	// Hash identifies the set: SHA-256 over the sorted (device id, serial)
	// pairs. A revocation names the hash of the set its operator previewed
	// and is refused when the set has changed since.
	Hash string
	// Sample names the first devices in id order (at most 20).
	Sample []string
}

// RevocationJob is a bulk revocation in progress or done: recorded before
// its first batch, so that one interrupted by a crash resumes at the next
// start. Its set is the selector's valid certificates created at or before
// Created.
type RevocationJob struct {
	ID       string
	Selector Selector
	SetHash  string
	Reason   RevocationReason
	Actor    Actor
	Created  time.Time
	Revoked  int64
	Done     bool
	Finished *time.Time
}
