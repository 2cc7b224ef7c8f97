package main

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// The event stream sends each revocation as a server-sent event, refuses
// streams past its limit, and ends when the server shuts down.
func TestRevocationEventStream(t *testing.T) {
	feed := make(chan pki.RevocationEvent, 1)
	done := make(chan struct{})
	subscribe := func(int) (<-chan pki.RevocationEvent, func()) { return feed, func() {} }
	srv := httptest.NewServer(revocationEventsLimited(done, subscribe, 1))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	second, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a stream past the limit: %d, want 503", second.StatusCode)
	}
	feed <- pki.RevocationEvent{Serial: "2a", IssuerKeyID: "ab", Reason: pki.ReasonKeyCompromise, RevokedAt: time.Unix(0, 0)}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			if !strings.Contains(data, `"serial":"2a"`) || !strings.Contains(data, `"reason":"keyCompromise"`) {
				t.Fatalf("event data %s", data)
			}
			break
		}
	}
	close(done)
	for sc.Scan() {
	}
	if sc.Err() != nil {
		t.Fatalf("the stream did not end cleanly at shutdown: %v", sc.Err())
	}
}
