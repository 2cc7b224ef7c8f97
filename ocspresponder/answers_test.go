package ocspresponder

import (
	"context"
	"crypto"
	"crypto/rand"
	"math/big"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/pki"
)

// heapPerAnswer fills a cache with n answers of derSize bytes (each DER
// its own allocation, as a store read makes it) and returns the heap they
// take per answer, after a collection.
func heapPerAnswer(t testing.TB, n, derSize int) float64 {
	t.Helper()
	ac, err := newAnswerCache(64 << 20) // over half full: the frequency sketch is made too
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	now := time.Now()
	for i := range n {
		der := make([]byte, derSize)
		_, _ = rand.Read(der[:16])
		k, _ := keyOf(big.NewInt(int64(i+1)), crypto.SHA1)
		ac.put(k, newAnswer(der, now, now.Add(24*time.Hour), kindGood), 0)
	}
	ac.c.CleanUp()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := ac.size(); got < n*99/100 {
		t.Fatalf("the cache holds %d of %d answers", got, n)
	}
	runtime.KeepAlive(ac)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// A cached answer costs at most 1.3 times its DER on the heap (issue 18),
// and the weigher's overhead constant is not below what it really costs.
func TestAnswerHeapCost(t *testing.T) {
	const der = 800 // a fleetpki answer: ECDSA responder, certificate included
	per := heapPerAnswer(t, 50000, der)
	t.Logf("heap per cached answer of %d DER bytes: %.0f bytes (%.2f×)", der, per, per/der)
	if per > 1.3*der {
		t.Errorf("a cached answer takes %.0f heap bytes for %d DER bytes: over 1.3×", per, der)
	}
	if weighed := float64(der + trailer + answerOverhead); weighed < 0.9*per {
		t.Errorf("the weigher counts %.0f bytes per answer, the heap holds %.0f: the byte cap would not bound the heap", weighed, per)
	}
}

// With a cache far smaller than the fleet, answers are evicted and read
// again all the time; a revoked certificate is never answered "good"
// after its revocation event, whatever was evicted or read meanwhile.
func TestEvictionNeverServesStaleGood(t *testing.T) {
	e := newPresignEnv(t)
	ctx := t.Context()
	const n = 300
	var certs []*ca.Issued
	for i := range n {
		certs = append(certs, e.issue(t, "dev-"+strconv.Itoa(i)))
	}
	if _, err := e.p.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// Room for about 100 answers of the 300.
	cache, err := NewCacheSource(CacheConfig{Signer: e.signer, Lookups: e.st, Responses: e.st, CacheBytes: 100 * (900 + answerOverhead)})
	if err != nil {
		t.Fatal(err)
	}
	reqs := make([]*Request, n)
	for i, c := range certs {
		der, _ := ocsp.CreateRequest(c.Certificate, e.te.Hierarchy.Intermediate(), &ocsp.RequestOptions{Hash: crypto.SHA1})
		reqs[i], _ = ParseRequest(der)
	}
	revoked := map[int]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				i := (k*7919 + w*104729) % n
				mu.Lock()
				wasRevoked := revoked[i]
				mu.Unlock()
				r, err := cache.Response(ctx, reqs[i])
				if err != nil {
					t.Errorf("certificate %d: %v", i, err)
					return
				}
				if wasRevoked && r.Answer != "revoked" {
					t.Errorf("certificate %d revoked before the request was answered %q (from %s)", i, r.Answer, r.Cache)
					return
				}
			}
		}()
	}
	for i := 0; i < n; i += 10 {
		if _, err := e.ca.Revoke(ctx, certs[i].Record.Serial, pki.ReasonKeyCompromise, pki.Actor{Name: "t"}); err != nil {
			t.Fatal(err)
		}
		cache.Revoked(certs[i].Record.Serial) // the revocation event
		mu.Lock()
		revoked[i] = true
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	cache.answers.c.CleanUp() // otter evicts behind its writes
	if st := cache.Stats(); st.Bytes > st.CapacityBytes || st.Entries >= n/2 {
		t.Errorf("the cache holds %d answers, %d bytes, for a cap of %d", st.Entries, st.Bytes, st.CapacityBytes)
	}
}

// gatedLookups holds a read after it was made, until released: the shape
// of a store read that raced a revocation.
type gatedLookups struct {
	Lookups
	read, release chan struct{}
	once          sync.Once
}

func (g *gatedLookups) LookupOCSP(ctx context.Context, hash string, serials []pki.Serial) (map[pki.Serial]pki.OCSPLookup, error) {
	res, err := g.Lookups.LookupOCSP(ctx, hash, serials)
	g.once.Do(func() {
		close(g.read)
		<-g.release
	})
	return res, err
}

// A read that saw "good" before a revocation, finishing after the
// revocation event, may answer that one request, but never leaves "good"
// in the cache.
func TestReadRacingRevocation(t *testing.T) {
	e := newPresignEnv(t)
	ctx := t.Context()
	c := e.issue(t, "dev-race")
	g := &gatedLookups{Lookups: e.st, read: make(chan struct{}), release: make(chan struct{})}
	cache, err := NewCacheSource(CacheConfig{Signer: e.signer, Lookups: g})
	if err != nil {
		t.Fatal(err)
	}
	der, _ := ocsp.CreateRequest(c.Certificate, e.te.Hierarchy.Intermediate(), &ocsp.RequestOptions{Hash: crypto.SHA1})
	req, _ := ParseRequest(der)
	first := make(chan *Response)
	go func() {
		r, _ := cache.Response(ctx, req)
		first <- r
	}()
	<-g.read // it read "valid"
	if _, err := e.ca.Revoke(ctx, c.Record.Serial, pki.ReasonKeyCompromise, pki.Actor{Name: "t"}); err != nil {
		t.Fatal(err)
	}
	cache.Revoked(c.Record.Serial)
	close(g.release)
	if r := <-first; r == nil || r.Answer != "good" {
		t.Fatalf("the racing read: %+v", r)
	}
	r, err := cache.Response(ctx, req)
	if err != nil || r.Answer != "revoked" {
		t.Fatalf("after the revocation event: %+v, %v (a read begun before it was cached)", r, err)
	}
}

// slowLookups makes every store read take a while, as a busy database does.
type slowLookups struct {
	Lookups
	calls atomic.Int64
}

func (s *slowLookups) LookupOCSP(ctx context.Context, hash string, serials []pki.Serial) (map[pki.Serial]pki.OCSPLookup, error) {
	s.calls.Add(1)
	time.Sleep(5 * time.Millisecond)
	return s.Lookups.LookupOCSP(ctx, hash, serials)
}

// Misses that arrive together are read together: 200 concurrent misses
// take far fewer than 200 store reads, and each gets its own answer.
func TestMissesAreBatched(t *testing.T) {
	e := newPresignEnv(t)
	ctx := t.Context()
	const n = 200
	var reqs []*Request
	var serials []*big.Int
	for i := range n {
		c := e.issue(t, "dev-"+strconv.Itoa(i))
		der, _ := ocsp.CreateRequest(c.Certificate, e.te.Hierarchy.Intermediate(), &ocsp.RequestOptions{Hash: crypto.SHA1})
		r, _ := ParseRequest(der)
		reqs, serials = append(reqs, r), append(serials, c.Certificate.SerialNumber)
	}
	if _, err := e.p.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	slow := &slowLookups{Lookups: e.st}
	cache, err := NewCacheSource(CacheConfig{Signer: e.signer, Lookups: slow})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := cache.Response(ctx, reqs[i])
			if err != nil || r.Answer != "good" || r.Cache != "store" {
				t.Errorf("request %d: %+v, %v", i, r, err)
				return
			}
			resp, err := ocsp.ParseResponse(r.DER, e.te.Hierarchy.Intermediate())
			if err != nil || resp.SerialNumber.Cmp(serials[i]) != 0 {
				t.Errorf("request %d got the answer about %v: %v", i, resp.SerialNumber, err)
			}
		}()
	}
	wg.Wait()
	st := cache.Stats()
	t.Logf("%d misses: %d store queries", n, slow.calls.Load())
	if slow.calls.Load() > n/4 || st.StoreReads != n {
		t.Errorf("%d misses took %d store queries (%d certificates read)", n, slow.calls.Load(), st.StoreReads)
	}
}
