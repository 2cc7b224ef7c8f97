package revocation

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// Follow reads a fleetpki's revocation event stream (GET
// /api/v1/revocations/events on the HTTPS listener, server-sent events,
// authenticated with a broker token) and sends each revoked serial to
// hints, reconnecting with backoff, until ctx ends. The events are only
// hints: the broker confirms each over OCSP before acting, so a forged
// event cannot lock a device out.
func Follow(ctx context.Context, client *http.Client, url, token string, hints chan<- pki.Serial, log *slog.Logger) {
	backoff := time.Second
	for ctx.Err() == nil {
		err := followOnce(ctx, client, url, token, hints)
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

func followOnce(ctx context.Context, client *http.Client, url, token string, hints chan<- pki.Serial) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
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
		ev, err := ParseData([]byte(strings.TrimSpace(data)))
		if err != nil {
			continue
		}
		select {
		case hints <- ev.Serial:
		case <-ctx.Done():
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("the stream closed")
}
