package expiry_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetpki/fleetpki/expiry"
	"github.com/fleetpki/fleetpki/internal/testenv"
	"github.com/fleetpki/fleetpki/pki"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Expiring certificates are announced to the webhook once each, signed;
// a failing delivery is retried on the backoff schedule and, once every
// retry failed, kept as a dead letter; a renewed device is not announced.
func TestWebhookDeliveryRetriesAndDeadLetters(t *testing.T) {
	caClock := &clock{t: time.Now()}
	env := testenv.New(t, testenv.Options{Clock: caClock})
	for _, id := range []string{"flaky", "steady", "broken", "renewed"} {
		env.Issue(t, id)
	}
	caClock.add(20 * 24 * time.Hour)
	env.Issue(t, "renewed") // its new certificate lasts past the window
	secret := []byte("a shared secret of 32 bytes, ok")
	clk := &clock{t: time.Now().Add(350 * 24 * time.Hour)} // the 365-day certificates expire within 30 days
	var mu sync.Mutex
	attempts := map[string]int{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := expiry.Verify(secret, body, r.Header.Get(expiry.Header), clk.Now(), 5*time.Minute); err != nil {
			t.Errorf("the receiver cannot verify the notice: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if expiry.Verify([]byte("another secret of some 32 bytes!"), body, r.Header.Get(expiry.Header), clk.Now(), 5*time.Minute) == nil {
			t.Error("a notice verifies with another secret")
		}
		var n expiry.Notice
		_ = json.Unmarshal(body, &n)
		mu.Lock()
		attempts[n.DeviceID]++
		a := attempts[n.DeviceID]
		mu.Unlock()
		if n.Event != "certificate.expiring" || n.Serial == "" || n.Attempt != a {
			t.Errorf("notice %+v (attempt %d)", n, a)
		}
		switch {
		case n.DeviceID == "broken", n.DeviceID == "flaky" && a <= 2:
			http.Error(w, "try again", http.StatusServiceUnavailable)
		}
	}))
	defer recv.Close()
	reg := prometheus.NewRegistry()
	n, err := expiry.New(expiry.Config{Store: env.Store, URL: recv.URL, Secret: secret, Clock: clk, Registerer: reg,
		Backoff: []time.Duration{time.Minute, 5 * time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	round := func() {
		t.Helper()
		if err := n.RunOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	round()
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "fleetpki_certificates_expiring" && mf.GetMetric()[0].GetGauge().GetValue() != 3 {
			t.Fatalf("fleetpki_certificates_expiring = %v, want 3 (not the renewed device)", mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	round() // nothing due yet: no second attempt
	mu.Lock()
	if attempts["steady"] != 1 || attempts["flaky"] != 1 || attempts["broken"] != 1 {
		t.Fatalf("first round: %v", attempts)
	}
	mu.Unlock()
	clk.add(time.Minute)
	round()
	clk.add(5 * time.Minute)
	round()
	clk.add(time.Hour)
	round()
	mu.Lock()
	if attempts["steady"] != 1 || attempts["flaky"] != 3 || attempts["broken"] != 3 {
		t.Fatalf("after the retries: %v (steady once; flaky delivered at its third; broken given up after three)", attempts)
	}
	mu.Unlock()
	dead, err := env.Store.ExpiryNotices(t.Context(), pki.NoticeDead, time.Time{}, 10)
	if err != nil || len(dead) != 1 || dead[0].DeviceID != "broken" || dead[0].LastError == "" || dead[0].Attempts != 3 {
		t.Fatalf("dead letters: %+v, %v", dead, err)
	}
	delivered, _ := env.Store.ExpiryNotices(t.Context(), pki.NoticeDelivered, time.Time{}, 10)
	if len(delivered) != 2 || attempts["renewed"] != 0 {
		t.Fatalf("delivered: %+v; the renewed device was announced %d times", delivered, attempts["renewed"])
	}
}
