package ocspresponder

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/pki"
)

// BenchmarkHandlerCached measures the handler answering from the cache over
// 1,000 distinct certificates, GET and POST, without the network:
//
//	go test -run '^$' -bench Handler ./ocspresponder/
func BenchmarkHandlerCached(b *testing.B) {
	p := newTestPKI(b)
	st := &fakeStatus{certs: map[pki.Serial]pki.CertRecord{}}
	cache, err := NewCacheSource(CacheConfig{Signer: &Signer{Issuer: p.issuer, Responder: p.responder, Key: p.respKey}, Lookups: st})
	if err != nil {
		b.Fatal(err)
	}
	src, _ := NewFilterSource(p.issuer, cache)
	h := NewResponder(src, nil, nil)
	reqs := make([][]byte, 1000)
	for i := range reqs {
		leaf := p.leaf(b, int64(1000+i))
		st.certs[pki.NewSerial(leaf.SerialNumber)] = pki.CertRecord{Status: pki.CertValid}
		reqs[i], _ = ocsp.CreateRequest(leaf, p.issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	}
	for _, method := range []string{"GET", "POST"} {
		b.Run(method, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					der := reqs[i%len(reqs)]
					i++
					var r *http.Request
					if method == "GET" {
						r = httptest.NewRequest("GET", "/ocsp/"+base64.StdEncoding.EncodeToString(der), nil)
					} else {
						r = httptest.NewRequest("POST", "/ocsp", bytes.NewReader(der))
					}
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					if w.Code != 200 {
						b.Fatalf("status %d", w.Code)
					}
				}
			})
		})
	}
}
