package sqlstore

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/fleetpki/fleetpki/store"

	"github.com/fleetpki/fleetpki/pki"
)

// Cursors are opaque to clients: base64url of a kind tag and the last key
// seen. The tag stops a cursor of one list from being used on another.

func encodeCursor(kind, key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + ":" + key))
}

func decodeCursor(kind, c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !strings.HasPrefix(string(b), kind+":") {
		return "", pki.Errorf(pki.Invalid, "the cursor is not valid for this list")
	}
	return string(b[len(kind)+1:]), nil
}

func decodeSeqCursor(kind, c string) (int64, error) {
	k, err := decodeCursor(kind, c)
	if err != nil || k == "" {
		return 0, err
	}
	n, err := strconv.ParseInt(k, 10, 64)
	if err != nil || n <= 0 {
		return 0, pki.Errorf(pki.Invalid, "the cursor is not valid for this list")
	}
	return n, nil
}

// limit clamps a requested page size.
func limit(n int) (int, error) {
	switch {
	case n < 0:
		return 0, pki.Errorf(pki.Invalid, "limit must not be negative")
	case n == 0:
		return store.DefaultLimit, nil
	case n > store.MaxLimit:
		return 0, pki.Errorf(pki.Invalid, "limit must be at most %d", store.MaxLimit)
	}
	return n, nil
}
