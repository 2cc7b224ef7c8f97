package ocspresponder

import (
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ocsp"
)

// maxRequestBytes bounds a request: a single-CertID request with a nonce is
// about 120 bytes; 4 KiB leaves room for any honest client.
const maxRequestBytes = 4 << 10

// Responder serves OCSP over HTTP: POST to its path with an
// application/ocsp-request body, or GET <path>/<base64 request>.
type Responder struct {
	maxAge   time.Duration // 0: until nextUpdate
	source   Source
	log      *slog.Logger
	answers  *prometheus.CounterVec
	counters map[string]prometheus.Counter // read-only after NewResponder
	cache    map[string]prometheus.Counter // by Response.Cache; read-only too
	now      func() time.Time
	parsed   parsedRequests
}

// parsedRequests remembers parsed requests by their DER: brokers and
// devices send the same few bytes again and again (no nonce, RFC 5019), and
// parsing them is a third of a cached answer's cost. Requests with a nonce
// are never kept (each is new). The cache is bounded in bytes and evicts
// the least used, since its keys are whatever clients send.
type parsedRequests struct {
	once sync.Once
	c    *otter.Cache[string, *Request]
}

// parsedRequestBytes bounds the parsed-request cache; parsedOverhead is
// what an entry costs besides its key (the parsed request, otter's node).
const (
	parsedRequestBytes = 4 << 20
	parsedOverhead     = 480
)

func (p *parsedRequests) parse(der []byte) (*Request, error) {
	p.once.Do(func() {
		p.c = otter.Must(&otter.Options[string, *Request]{MaximumWeight: parsedRequestBytes,
			Weigher: func(k string, _ *Request) uint32 { return uint32(len(k)) + parsedOverhead }})
	})
	if req, ok := p.c.GetIfPresent(string(der)); ok {
		return req, nil
	}
	req, err := ParseRequest(der)
	if err != nil || req.Nonce != nil {
		return req, err
	}
	p.c.Set(string(der), req)
	return req, nil
}

// SetHTTPMaxAge caps the Cache-Control max-age of answers (by default the
// time to their nextUpdate): an HTTP cache or CDN in front then asks again
// within d, which bounds how long it can serve "good" after a revocation.
// Set it before serving.
func (rs *Responder) SetHTTPMaxAge(d time.Duration) { rs.maxAge = d }

// NewResponder returns a Responder around source; reg may be nil.
func NewResponder(source Source, log *slog.Logger, reg prometheus.Registerer) *Responder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Responder{source: source, log: log, now: time.Now,
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetpki_ocsp_responses_total",
			Help: "OCSP responses by answer: good, revoked, unknown, malformed, unauthorized, try_later.",
		}, []string{"answer"})}
	cache := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleetpki_ocsp_cache_total",
		Help: "OCSP responses by origin: memory (cache hit), store (pre-signed), signed (miss, signed now), nonce (signed for the request).",
	}, []string{"result"})
	if reg != nil {
		reg.MustRegister(r.answers, cache)
	}
	r.cache = map[string]prometheus.Counter{}
	for _, c := range []string{"memory", "store", "signed", "nonce"} {
		r.cache[c] = cache.WithLabelValues(c)
	}
	r.counters = map[string]prometheus.Counter{}
	for _, a := range []string{"good", "revoked", "unknown", "malformed", "unauthorized", "try_later"} {
		r.counters[a] = r.answers.WithLabelValues(a)
	}
	return r
}

func (rs *Responder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	der, err := rs.requestBytes(w, r)
	if err != nil {
		if errors.Is(err, errMethod) {
			w.Header().Set("Allow", "GET, HEAD, POST")
			http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
			return
		}
		rs.log.DebugContext(r.Context(), "bad OCSP request", "err", err)
		rs.fail(w, "malformed", ocsp.MalformedRequestErrorResponse)
		return
	}
	req, err := rs.parsed.parse(der)
	if err != nil {
		rs.log.DebugContext(r.Context(), "bad OCSP request", "err", err)
		rs.fail(w, "malformed", ocsp.MalformedRequestErrorResponse)
		return
	}
	resp, err := rs.source.Response(r.Context(), req)
	switch {
	case errors.Is(err, ErrUnauthorized):
		rs.fail(w, "unauthorized", ocsp.UnauthorizedErrorResponse)
		return
	case err != nil:
		rs.log.ErrorContext(r.Context(), "OCSP status unavailable", "serial", req.SerialNumber.Text(16), "err", err)
		rs.fail(w, "try_later", ocsp.TryLaterErrorResponse)
		return
	}
	now := rs.now()
	if !now.Before(resp.NextUpdate) {
		// Never serve a response past its nextUpdate.
		rs.log.ErrorContext(r.Context(), "OCSP response expired before it was served", "serial", req.SerialNumber.Text(16))
		rs.fail(w, "try_later", ocsp.TryLaterErrorResponse)
		return
	}
	if resp.etag == "" {
		resp.headers() // a Source other than CacheSource
	}
	etag := resp.etag
	h := w.Header()
	// Canonical keys, values made once per response: this is the hot path.
	h["Content-Type"] = ocspContentType
	h["Etag"] = resp.hETag
	h["Last-Modified"] = resp.hLastModified
	h["Expires"] = resp.hExpires
	if resp.Fresh {
		h.Set("Cache-Control", "no-store")
	} else {
		age := resp.NextUpdate.Sub(now)
		if rs.maxAge > 0 {
			age = min(age, rs.maxAge)
		}
		h.Set("Cache-Control", "max-age="+strconv.Itoa(int(age.Seconds()))+", public, no-transform, must-revalidate")
	}
	rs.count(resp.Answer)
	if c, ok := rs.cache[resp.Cache]; ok {
		c.Inc()
	}
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h["Content-Length"] = resp.hLength
	_, _ = w.Write(resp.DER)
}

var errMethod = errors.New("method not allowed")

// ocspContentType is the Content-Type header value of every answer.
var ocspContentType = []string{"application/ocsp-response"}[:1:1]

// requestBytes reads the DER request from a POST body or a GET path.
func (rs *Responder) requestBytes(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	switch r.Method {
	case http.MethodPost:
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
		if err != nil {
			return nil, err
		}
		return b, nil
	case http.MethodGet, http.MethodHead:
		// HEAD answers like GET (RFC 9110), without the body, for the HTTP
		// caches in front of a responder. The request is the last path
		// segment(s): base64 may contain '/'.
		p := r.URL.EscapedPath()
		i := strings.Index(p, "/ocsp/")
		if i < 0 {
			return nil, errors.New("no request in the path")
		}
		enc, err := url.PathUnescape(p[i+len("/ocsp/"):])
		if err != nil {
			return nil, err
		}
		if len(enc) > 2*maxRequestBytes {
			return nil, errors.New("request too large")
		}
		// Some clients do not escape '+', which then arrives as a space.
		return base64.StdEncoding.DecodeString(strings.ReplaceAll(enc, " ", "+"))
	}
	return nil, errMethod
}

// count increments the answer's counter, resolved once per label.
func (rs *Responder) count(answer string) {
	if c, ok := rs.counters[answer]; ok {
		c.Inc()
		return
	}
	rs.answers.WithLabelValues(answer).Inc()
}

func (rs *Responder) fail(w http.ResponseWriter, answer string, body []byte) {
	rs.count(answer)
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}
