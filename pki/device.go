package pki

import (
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxDeviceIDLen is the longest device id accepted, in bytes.
const MaxDeviceIDLen = 128

// DeviceStatus is a device's lifecycle state.
type DeviceStatus string

const (
	// DeviceActive: the device has at least one certificate that is not revoked.
	DeviceActive DeviceStatus = "active"
	// DeviceRevoked: every certificate the device had is revoked.
	DeviceRevoked DeviceStatus = "revoked"
)

// Device is an enrolled device. Its id is the certificate's CN and the MQTT client id.
type Device struct {
	ID        string
	Kind      DeviceKind // "" reads as KindDevice
	Status    DeviceStatus
	Metadata  map[string]string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ValidateDeviceID checks a device id. Ids end up in a certificate's CN, in a
// URI SAN (urn:fleetpki:device:<id>) and in MQTT topics (devices/<id>/#), so the
// alphabet is deliberately small: ASCII letters and digits, then also
// '.', '_', '-', ':', '@' and '~'; no '/', '+' or '#' (topic syntax), no spaces
// or control characters, at most 128 bytes.
func ValidateDeviceID(id string) error {
	switch {
	case id == "":
		return Errorf(Invalid, "device id is empty")
	case len(id) > MaxDeviceIDLen:
		return Errorf(Invalid, "device id is longer than %d bytes", MaxDeviceIDLen)
	case !utf8.ValidString(id):
		return Errorf(Invalid, "device id is not valid UTF-8")
	}
	for i, r := range id {
		if isAlnum(r) || (i > 0 && isIDPunct(r)) {
			continue
		}
		if r < 0x20 || r == 0x7f {
			return Errorf(Invalid, "device id contains a control character at byte %d", i)
		}
		return Errorf(Invalid, "device id contains %q at byte %d; allowed are letters, digits and . _ - : @ ~ (not first)", r, i)
	}
	return nil
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

func isIDPunct(r rune) bool {
	switch r {
	case '.', '_', '-', ':', '@', '~':
		return true
	}
	return false
}

// DeviceURI is the URI SAN that names a device in its certificate.
func DeviceURI(id string) string { return "urn:fleetpki:device:" + id }

// IsServiceCertificate reports whether a certificate is a service's (a
// broker's, a server's) rather than a device's: it is good for TLS
// servers. Device profiles are client-only, so a service certificate is
// never taken for a device's, even where its CN looks like a device id.
func IsServiceCertificate(c *x509.Certificate) bool {
	return slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

// Backdate is how long before its issuance a fleetpki certificate's
// NotBefore lies, absorbing clock skew between the CA and verifiers; a
// holder counts the certificate's life from NotBefore+Backdate.
const Backdate = time.Minute

// Metadata limits: a device's metadata is small, flat and searchable.
const (
	MaxMetadataKeys     = 32
	MaxMetadataKeyLen   = 64
	MaxMetadataValueLen = 256
	// MaxMetadataBytes bounds the whole metadata, keys and values together.
	MaxMetadataBytes = 4096
)

// ValidateMetadata checks a device's metadata: at most 32 keys of up to 64
// bytes ([A-Za-z0-9._-]) with UTF-8 values of up to 256 bytes, no control
// characters, 4 KiB in all.
func ValidateMetadata(m map[string]string) error {
	if len(m) > MaxMetadataKeys {
		return Errorf(Invalid, "metadata has %d keys; at most %d are allowed", len(m), MaxMetadataKeys)
	}
	total := 0
	for k, v := range m {
		total += len(k) + len(v)
	}
	if total > MaxMetadataBytes {
		return Errorf(Invalid, "metadata is %d bytes; at most %d are allowed", total, MaxMetadataBytes)
	}
	for k, v := range m {
		if k == "" || len(k) > MaxMetadataKeyLen {
			return Errorf(Invalid, "metadata key %q must be 1 to %d bytes", truncate(k, 64), MaxMetadataKeyLen)
		}
		for _, r := range k {
			if !isAlnum(r) && r != '.' && r != '_' && r != '-' {
				return Errorf(Invalid, "metadata key %q may contain only letters, digits, '.', '_' and '-'", truncate(k, 64))
			}
		}
		if len(v) > MaxMetadataValueLen || !utf8.ValidString(v) {
			return Errorf(Invalid, "metadata value of %q must be valid UTF-8 of at most %d bytes", k, MaxMetadataValueLen)
		}
		for _, r := range v {
			if r < 0x20 || r == 0x7f {
				return Errorf(Invalid, "metadata value of %q contains a control character", k)
			}
		}
	}
	return nil
}

// DeviceKind says whether an identity is a device or a service (a broker,
// a server) that devices talk to.
type DeviceKind string

// The kinds of identities.
const (
	KindDevice  DeviceKind = "device"
	KindService DeviceKind = "service"
)

// Limits of a service certificate's names.
const (
	MaxServiceNames = 20
	maxDNSName      = 253
)

// ValidateServiceName checks a name a service certificate may carry: an IP
// address, or a DNS name of letters, digits and hyphens in dot-separated
// labels of 1 to 63 characters, not starting or ending with a hyphen, at
// most 253 characters; no wildcards (a fleet's services are named one by
// one). It returns the name in its canonical form (lower case; an IP as Go
// prints it).
func ValidateServiceName(name string) (string, error) {
	if ip := net.ParseIP(name); ip != nil {
		return ip.String(), nil
	}
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	if n == "" || len(n) > maxDNSName {
		return "", Errorf(Invalid, "name %q is not a DNS name or IP address of at most %d characters", truncate(name, 64), maxDNSName)
	}
	labels := strings.Split(n, ".")
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		// RFC 1123 §2.1: a top-level label is never all digits, so that
		// "10.0.0.300" is not taken for a host name.
		return "", Errorf(Invalid, "name %q is neither an IP address nor a DNS name (its last label is all digits)", truncate(name, 64))
	}
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", Errorf(Invalid, "name %q is not a valid DNS name (labels of 1 to 63 characters, no leading or trailing hyphen)", truncate(name, 64))
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return "", Errorf(Invalid, "name %q may hold only letters, digits, hyphens and dots (no wildcards)", truncate(name, 64))
			}
		}
	}
	return n, nil
}
