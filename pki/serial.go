package pki

import (
	"fmt"
	"math/big"
	"strings"
)

// Serial is a certificate serial number in its one canonical text form:
// lower-case hexadecimal without leading zeros or separators. It is how serials
// are stored, compared, and shown in the API.
type Serial string

// maxSerialBytes is RFC 5280's limit on a serial's encoding (20 octets).
const maxSerialBytes = 20

// NewSerial returns the canonical form of n, which must be positive.
func NewSerial(n *big.Int) Serial {
	return Serial(n.Text(16))
}

// ParseSerial accepts hexadecimal in either case, with optional colons (as
// openssl prints serials) and leading zeros, and returns its canonical form.
func ParseSerial(s string) (Serial, error) {
	h := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	h = strings.TrimPrefix(h, "0x")
	if h == "" || len(h) > 2*maxSerialBytes+2 {
		return "", Errorf(Invalid, "serial must be 1 to 40 hexadecimal digits")
	}
	n, ok := new(big.Int).SetString(h, 16)
	if !ok {
		return "", Errorf(Invalid, "serial %q is not hexadecimal", truncate(s, 64))
	}
	if n.Sign() <= 0 {
		return "", Errorf(Invalid, "serial must be positive")
	}
	if len(n.Bytes()) > maxSerialBytes {
		return "", Errorf(Invalid, "serial is longer than 20 octets")
	}
	return NewSerial(n), nil
}

// BigInt returns the serial as a number; it panics on a non-canonical value,
// which only a programming error can produce.
func (s Serial) BigInt() *big.Int {
	n, ok := new(big.Int).SetString(string(s), 16)
	if !ok {
		panic(fmt.Sprintf("pki: invalid serial %q", string(s)))
	}
	return n
}

func (s Serial) String() string { return string(s) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
