package api

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/revocation"
)

// The event stream needs a broker (or admin) token, sends each committed
// revocation as a typed event that the follower's parser reads back, caps
// the streams per identity, and ends at shutdown.
func TestRevocationEventStream(t *testing.T) {
	var mu sync.Mutex
	var subs []chan pki.RevocationEvent
	subscribe := func(int) (<-chan pki.RevocationEvent, func()) {
		mu.Lock()
		defer mu.Unlock()
		ch := make(chan pki.RevocationEvent, 1)
		subs = append(subs, ch)
		return ch, func() {}
	}
	publish := func(ev pki.RevocationEvent) {
		mu.Lock()
		defer mu.Unlock()
		for _, ch := range subs {
			ch <- ev
		}
	}
	done := make(chan struct{})
	a := &API{cfg: Config{Tokens: fakeAccounts{}, Done: done, Events: subscribe}, log: discard(), err: errorWriter{discard()}}
	srv := httptest.NewServer(a.routes())
	defer srv.Close()
	open := func(token string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/revocations/events", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for token, want := range map[string]int{"": 401, "role-auditor": 403, "role-operator": 403} {
		if resp := open(token); resp.StatusCode != want {
			t.Errorf("token %q: %d, want %d", token, resp.StatusCode, want)
		}
	}
	var streams []*http.Response
	for range maxStreamsPerUser {
		resp := open("role-broker")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("broker stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		streams = append(streams, resp)
	}
	if resp := open("role-broker"); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a stream past the per-identity cap: %d, want 503 with Retry-After", resp.StatusCode)
	}
	if resp := open("role-admin"); resp.StatusCode != http.StatusOK {
		t.Fatalf("another identity is not held by the broker's cap: %d", resp.StatusCode)
	} else {
		streams = append(streams, resp)
	}
	want := pki.RevocationEvent{Serial: "2a", IssuerKeyID: "ab", Reason: pki.ReasonKeyCompromise, RevokedAt: time.Unix(1700000000, 0)}
	publish(want)
	sc := bufio.NewScanner(streams[0].Body)
	got := false
	for sc.Scan() && !got {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			ev, err := revocation.ParseData([]byte(data))
			if err != nil || ev.Serial != "2a" || ev.Reason != pki.ReasonKeyCompromise || !ev.RevokedAt.Equal(want.RevokedAt) || ev.IssuerKeyID != "ab" {
				t.Fatalf("event %s parsed as %+v, %v", data, ev, err)
			}
			got = true
		}
	}
	if !got {
		t.Fatal("no event on the stream")
	}
	close(done)
	for sc.Scan() {
	}
	if sc.Err() != nil {
		t.Fatalf("the stream did not end cleanly at shutdown: %v", sc.Err())
	}
	for _, s := range streams {
		s.Body.Close()
	}
}
