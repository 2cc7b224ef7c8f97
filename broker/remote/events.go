package remote

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// FollowEvents reads a fleetpki's revocation event stream (GET
// /revocations/events, server-sent events) and sends each revoked serial to
// hints, reconnecting with backoff, until ctx ends. The events are only
// hints: the broker confirms each over OCSP before acting, so this needs no
// authentication and a forged event cannot lock a device out.
func FollowEvents(ctx context.Context, client *http.Client, url string, hints chan<- pki.Serial, log *slog.Logger) {
	backoff := time.Second
	for ctx.Err() == nil {
		err := followOnce(ctx, client, url, hints)
		if ctx.Err() != nil {
			return
		}
		log.WarnContext(ctx, "revocation event stream ended; reconnecting", "url", url, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// maxEventLine bounds one line of the stream.
const maxEventLine = 4 << 10

func followOnce(ctx context.Context, client *http.Client, url string, hints chan<- pki.Serial) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return fmt.Errorf("HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, maxEventLine), maxEventLine)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data:")
		if !ok {
			continue // comments, event names, blank separators
		}
		var ev struct {
			Serial string `json:"serial"`
		}
		if json.Unmarshal([]byte(strings.TrimSpace(data)), &ev) != nil {
			continue
		}
		s, err := pki.ParseSerial(ev.Serial)
		if err != nil {
			continue
		}
		select {
		case hints <- s:
		case <-ctx.Done():
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("the stream closed")
}

// Forget drops what the checker knows of a certificate, so that its next
// check asks the responder (a revocation hint arrived).
func (c *Checker) Forget(leaf, issuer *x509.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.answers, answerKey(leaf, issuer))
}
