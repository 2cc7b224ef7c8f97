package pki

import (
	"errors"
	"net"
	"strings"
	"testing"
)

func TestValidateServiceName(t *testing.T) {
	for in, want := range map[string]string{
		"broker.example": "broker.example", "Broker.Example.": "broker.example", "10.0.0.5": "10.0.0.5",
		"::1": "::1", "2001:DB8::1": "2001:db8::1", "a-b.c1": "a-b.c1", "localhost": "localhost",
	} {
		if got, err := ValidateServiceName(in); err != nil || got != want {
			t.Errorf("ValidateServiceName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ".", "*.example", "a..b", "-a.example", "a-.example", "a_b.example", "10.0.0.300",
		"1.2.3", "exa mple", "bücher.example", strings.Repeat("a", 64) + ".example", strings.Repeat("a.", 127) + "ab",
		"a\x00.example", "a/b"} {
		if got, err := ValidateServiceName(in); !errors.Is(err, Invalid) {
			t.Errorf("ValidateServiceName(%q) = %q, %v; want Invalid", in, got, err)
		}
	}
}

// Whatever it is given, an accepted name is canonical (accepted again
// unchanged), is an IP address or a host name of letters, digits, hyphens
// and dots within 253 characters, and carries no wildcard.
func FuzzValidateServiceName(f *testing.F) {
	for _, s := range []string{"broker.example", "10.0.0.5", "::ffff:10.0.0.5", "*.x", "A.B.", "1.2.3.4.5", "xn--bcher-kva.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := ValidateServiceName(in)
		if err != nil {
			if !errors.Is(err, Invalid) {
				t.Fatalf("error of another kind: %v", err)
			}
			return
		}
		again, err := ValidateServiceName(out)
		if err != nil || again != out {
			t.Fatalf("%q → %q is not canonical: %q, %v", in, out, again, err)
		}
		if net.ParseIP(out) != nil {
			return
		}
		if len(out) > 253 || strings.Trim(out, "abcdefghijklmnopqrstuvwxyz0123456789-.") != "" {
			t.Fatalf("%q → %q", in, out)
		}
	})
}
