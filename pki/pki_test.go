package pki

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseRevocationReason(t *testing.T) {
	for in, want := range map[string]RevocationReason{
		"": ReasonUnspecified, "keyCompromise": ReasonKeyCompromise, "KEYCOMPROMISE": ReasonKeyCompromise,
		"superseded": ReasonSuperseded, "cessationOfOperation": ReasonCessationOfOperation,
	} {
		if got, err := ParseRevocationReason(in); err != nil || got != want {
			t.Errorf("ParseRevocationReason(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"certificateHold", "removeFromCRL", "stolen", "1"} {
		if _, err := ParseRevocationReason(in); !errors.Is(err, Invalid) {
			t.Errorf("ParseRevocationReason(%q): err = %v, want Invalid", in, err)
		}
	}
	if ReasonKeyCompromise.String() != "keyCompromise" || RevocationReason(7).Valid() {
		t.Error("reason names or validity wrong")
	}
}

func TestRoles(t *testing.T) {
	cases := []struct {
		have, need Role
		ok         bool
	}{
		{RoleAdmin, RoleOperator, true}, {RoleOperator, RoleOperator, true}, {RoleAuditor, RoleOperator, false},
		{RoleOperator, RoleAdmin, false}, {RoleAuditor, RoleAuditor, true},
		{RoleBroker, RoleBroker, true}, {RoleAdmin, RoleBroker, true}, {RoleOperator, RoleBroker, false}, {RoleBroker, RoleAuditor, false}, {"", RoleAuditor, false}, {"root", RoleAuditor, false},
	}
	for _, c := range cases {
		if got := c.have.Allows(c.need); got != c.ok {
			t.Errorf("%q.Allows(%q) = %v, want %v", c.have, c.need, got, c.ok)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	cause := errors.New("driver: connection refused on 10.0.0.5")
	err := fmt.Errorf("issue: %w", Wrap(Unavailable, cause, "the database is unavailable"))
	if !errors.Is(err, Unavailable) || !errors.Is(err, cause) || errors.Is(err, NotFound) {
		t.Fatal("errors.Is does not see the kind and the cause")
	}
	if KindOf(err) != Unavailable || Message(err) != "the database is unavailable" {
		t.Fatalf("KindOf = %v, Message = %q", KindOf(err), Message(err))
	}
	if KindOf(cause) != nil || Message(cause) != "" {
		t.Fatal("an internal error has a kind or a caller-safe message")
	}
}

func TestCertStatusAt(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := CertRecord{Status: CertValid, NotAfter: now}
	if c.StatusAt(now.Add(-time.Second)) != CertValid || c.StatusAt(now) != CertExpired {
		t.Fatal("expiry is not derived from NotAfter")
	}
	c.Status = CertRevoked
	if c.StatusAt(now.Add(time.Hour)) != CertRevoked {
		t.Fatal("an expired revoked certificate must stay revoked")
	}
}

func TestValidateMetadata(t *testing.T) {
	if err := ValidateMetadata(map[string]string{"lot": "2026-W41", "line.station": "A-3"}); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]map[string]string{
		"bad key":      {"lot id": "x"},
		"control char": {"lot": "a\nb"},
		"long value":   {"lot": string(make([]byte, 300))},
		"over 4 KiB": func() map[string]string {
			m := map[string]string{}
			for i := range 20 {
				m[fmt.Sprintf("key-%02d", i)] = strings.Repeat("v", 250)
			}
			return m
		}(),
	} {
		if err := ValidateMetadata(m); !errors.Is(err, Invalid) {
			t.Errorf("%s: err = %v, want Invalid", name, err)
		}
	}
}
