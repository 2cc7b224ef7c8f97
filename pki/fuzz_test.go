package pki

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzValidateDeviceID checks that every accepted id is safe where ids go:
// a CN, a URI SAN and an MQTT topic level.
func FuzzValidateDeviceID(f *testing.F) {
	for _, s := range []string{"sensor-1", "", "a/b", "a\x00", "ü", strings.Repeat("a", 129), "x+#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := ValidateDeviceID(id)
		if err != nil {
			if !errors.Is(err, Invalid) {
				t.Fatalf("error of another kind: %v", err)
			}
			return
		}
		if id == "" || len(id) > MaxDeviceIDLen || !utf8.ValidString(id) || strings.ContainsAny(id, "/+# \t\r\n\x00%?") {
			t.Fatalf("accepted unsafe id %q", id)
		}
	})
}

// FuzzParseSerial checks that a parsed serial is canonical and round-trips.
func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{"01", "0A:bc", "0", "-1", "zz", strings.Repeat("f", 41)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		serial, err := ParseSerial(s)
		if err != nil {
			if !errors.Is(err, Invalid) {
				t.Fatalf("error of another kind: %v", err)
			}
			return
		}
		if again, err := ParseSerial(string(serial)); err != nil || again != serial {
			t.Fatalf("serial %q does not round-trip: %q, %v", serial, again, err)
		}
		if n := serial.BigInt(); n.Sign() <= 0 || len(n.Bytes()) > 20 {
			t.Fatalf("serial %q out of range", serial)
		}
	})
}
