package pki

import "strings"

// RevocationReason is an RFC 5280 §5.3.1 CRLReason code.
type RevocationReason int

// The RFC 5280 reason codes (7 is unused by the RFC).
const (
	ReasonUnspecified          RevocationReason = 0
	ReasonKeyCompromise        RevocationReason = 1
	ReasonCACompromise         RevocationReason = 2
	ReasonAffiliationChanged   RevocationReason = 3
	ReasonSuperseded           RevocationReason = 4
	ReasonCessationOfOperation RevocationReason = 5
	ReasonCertificateHold      RevocationReason = 6
	ReasonRemoveFromCRL        RevocationReason = 8
	ReasonPrivilegeWithdrawn   RevocationReason = 9
	ReasonAACompromise         RevocationReason = 10
)

var reasonNames = map[RevocationReason]string{
	ReasonUnspecified:          "unspecified",
	ReasonKeyCompromise:        "keyCompromise",
	ReasonCACompromise:         "cACompromise",
	ReasonAffiliationChanged:   "affiliationChanged",
	ReasonSuperseded:           "superseded",
	ReasonCessationOfOperation: "cessationOfOperation",
	ReasonCertificateHold:      "certificateHold",
	ReasonRemoveFromCRL:        "removeFromCRL",
	ReasonPrivilegeWithdrawn:   "privilegeWithdrawn",
	ReasonAACompromise:         "aACompromise",
}

// String returns the RFC 5280 name, e.g. "keyCompromise".
func (r RevocationReason) String() string {
	if n, ok := reasonNames[r]; ok {
		return n
	}
	return "invalid"
}

// Valid reports whether r is a reason a fleetpki revocation may carry.
// certificateHold and removeFromCRL are refused: fleetpki revocation is final,
// and a hold that is later lifted would make the CRL history lie.
func (r RevocationReason) Valid() bool {
	_, ok := reasonNames[r]
	return ok && r != ReasonCertificateHold && r != ReasonRemoveFromCRL
}

// ParseRevocationReason accepts an RFC 5280 reason name (case-insensitive);
// the empty string means unspecified.
func ParseRevocationReason(s string) (RevocationReason, error) {
	if s == "" {
		return ReasonUnspecified, nil
	}
	for r, n := range reasonNames {
		if strings.EqualFold(n, s) {
			if !r.Valid() {
				return 0, Errorf(Invalid, "reason %q is not supported: revocation in fleetpki is final", n)
			}
			return r, nil
		}
	}
	return 0, Errorf(Invalid, "unknown revocation reason %q", truncate(s, 64))
}

// MarshalText writes the RFC 5280 name.
func (r RevocationReason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads an RFC 5280 name.
func (r *RevocationReason) UnmarshalText(b []byte) error {
	v, err := ParseRevocationReason(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
