package pki

import (
	"fmt"
	"regexp"
	"time"
)

// Role is an administrator's role. Each of auditor, operator and admin
// includes the rights of those below it; broker stands apart.
type Role string

const (
	// RoleAuditor reads everything.
	RoleAuditor Role = "auditor"
	// RoleOperator also revokes.
	RoleOperator Role = "operator"
	// RoleAdmin also manages credentials and users.
	RoleAdmin Role = "admin"
	// RoleBroker is a machine identity of an enforcement point (a
	// standalone broker): it may follow the revocation event stream and
	// nothing else; it reads no device and revokes nothing.
	RoleBroker Role = "broker"
)

var roleRank = map[Role]int{RoleAuditor: 1, RoleOperator: 2, RoleAdmin: 3}

// ParseRole accepts "admin", "operator", "auditor" or "broker".
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if _, ok := roleRank[r]; !ok && r != RoleBroker {
		return "", Errorf(Invalid, "unknown role %q (want admin, operator, auditor or broker)", truncate(s, 32))
	}
	return r, nil
}

// Allows reports whether a holder of r may act where need is required.
// An unknown role allows nothing; broker allows only broker routes, which
// admin may also use.
func (r Role) Allows(need Role) bool {
	if need == RoleBroker {
		return r == RoleBroker || r == RoleAdmin
	}
	have, ok := roleRank[r]
	return ok && have >= roleRank[need]
}

// User is an administrator of the web UI and the admin API.
type User struct {
	ID           string
	Name         string
	Role         Role
	PasswordHash string // PHC-format argon2id
	Disabled     bool
	CreatedAt    time.Time
}

var userNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidateUserName checks a user name: 1–64 of a-z 0-9 . _ - (lower case), starting alphanumerically.
func ValidateUserName(name string) error {
	if !userNameRE.MatchString(name) {
		return Errorf(Invalid, "user name %q must be 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", truncate(name, 64))
	}
	return nil
}

// APIToken is an admin API bearer token. Only its SHA-256 hash is stored.
type APIToken struct {
	ID        string
	UserID    string
	Hash      []byte
	CreatedAt time.Time
	ExpiresAt *time.Time
	Revoked   bool
}

// Credential is an enrollment credential of a factory line. Only the SHA-256
// hash of its secret is stored.
type Credential struct {
	ID            string
	Name          string
	Hash          []byte
	Profiles      []string // allowed profiles; empty means only "device"
	DevicePattern string   // an RE2 regular expression, anchored on use; empty allows any id
	// NamePattern is an RE2 expression every DNS name or IP address of a
	// service certificate must match (anchored); empty allows no names, and
	// so no service certificates.
	NamePattern string
	ExpiresAt   *time.Time
	MaxUses     int64 // 0 means unlimited
	// NoReenroll refuses a device id that is enrolled already (re-flashed
	// devices then need another credential).
	NoReenroll bool
	Uses       int64
	Disabled   bool
	CreatedAt  time.Time
}

// WebSession is a signed-in admin web UI session as stored: the session id
// itself is only in the browser's cookie; the store keeps its SHA-256.
type WebSession struct {
	IDHash    string
	UserName  string
	CSRF      string
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time
}

// Stats are the dashboard's counts at a moment.
type Stats struct {
	ActiveDevices int64
	IssuedToday   int64
	IssuedWeek    int64
	Revoked       int64
	// ExpiringSoon counts valid certificates whose NotAfter falls within 30 days.
	ExpiringSoon int64
	// PerDay counts certificates issued per UTC day, oldest day first.
	PerDay []DayCount
}

// DayCount is one day's count.
type DayCount struct {
	Day   time.Time
	Count int64
}

// maxDevicePattern bounds a credential's device-id pattern.
const maxDevicePattern = 512

// CompileDevicePattern compiles a credential's device-id pattern, anchored so
// that it must match the whole id. The pattern must be a regular expression
// on its own before it is anchored: otherwise `sensor-[0-9]+)|(.*` would
// close the anchoring group early and, once wrapped, match every id.
func CompileDevicePattern(p string) (*regexp.Regexp, error) {
	if len(p) > maxDevicePattern {
		return nil, Errorf(Invalid, "device pattern is longer than %d bytes", maxDevicePattern)
	}
	if _, err := regexp.Compile(p); err != nil {
		return nil, Wrap(Invalid, err, fmt.Sprintf("device pattern %q is not a valid regular expression", truncate(p, 64)))
	}
	re, err := regexp.Compile(`^(?:` + p + `)$`)
	if err != nil {
		return nil, Wrap(Invalid, err, fmt.Sprintf("device pattern %q is not a valid regular expression", truncate(p, 64)))
	}
	return re, nil
}
