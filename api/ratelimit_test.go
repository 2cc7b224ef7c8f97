package api

import (
	"testing"
	"time"
)

func TestLimiters(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiters(2, 3, func() time.Time { return now })
	for i := range 3 {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("request %d within the burst refused", i+1)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait <= 0 || wait > 500*time.Millisecond || retryAfterSeconds(wait) != "1" {
		t.Fatalf("over the burst: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another credential is limited too")
	}
	now = now.Add(500 * time.Millisecond) // one token at 2/s
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("a token did not come back")
	}
	if ok, _ := l.allow("a"); ok {
		t.Fatal("two tokens came back in half a second at 2/s")
	}
	now = now.Add(time.Hour) // idle buckets are swept
	l.allow("c")
	if len(l.buckets) != 1 {
		t.Fatalf("%d buckets after the sweep, want 1", len(l.buckets))
	}
	var unlimited *limiters = newLimiters(0, 0, time.Now)
	if ok, _ := unlimited.allow("x"); !ok {
		t.Fatal("rate 0 must mean unlimited")
	}
}
