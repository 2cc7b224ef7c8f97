package ocspresponder

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/big"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetpki/fleetpki/pki"
)

// The answer cache holds, per certificate and CertID hash, the signed DER
// and the few numbers its HTTP headers need, in one byte-bounded cache
// (otter's W-TinyLFU: frequently asked answers stay, one-off ones go
// first); nothing is ever dropped wholesale. A revocation invalidates the
// certificate's answers, and a read that began before a revocation of its
// certificate does not put what it read into the cache (it may predate the
// revocation).

// DefaultCacheBytes bounds the answer cache unless configured.
const DefaultCacheBytes = 256 << 20

// answerOverhead is what a cached answer costs besides its buffer: otter's
// node and table slot, its frequency counter, the key and the allocator's
// rounding of the buffer, as TestAnswerHeapCost measures it. The weigher
// counts it so that the byte cap bounds the heap, not just the DER.
const answerOverhead = 176

// answerKey names a cached answer: the serial (at most 20 octets, RFC 5280
// §4.1.2.2, right-aligned) and the CertID hash.
type answerKey struct {
	serial [20]byte
	hash   uint8 // a crypto.Hash
}

// keyOf returns the key of a request; false for a serial no CA of ours can
// have issued (negative or longer than 20 octets).
func keyOf(serial *big.Int, h crypto.Hash) (answerKey, bool) {
	var k answerKey
	if serial.Sign() < 0 || serial.BitLen() > 160 || h > 255 {
		return k, false
	}
	serial.FillBytes(k.serial[:])
	k.hash = uint8(h)
	return k, true
}

// Answers kinds.
const (
	kindGood uint8 = iota
	kindRevoked
	kindUnknown
)

var kindNames = [...]string{"good", "revoked", "unknown"}

// answer is a cached answer in one allocation: the signed DER followed by
// a trailer of what its headers need (an ETag, thisUpdate and nextUpdate
// in Unix seconds, the kind), so that a cached answer costs its DER plus
// little more (TestAnswerHeapCost).
type answer struct{ buf []byte }

const trailer = 8 + 4 + 4 + 1

func newAnswer(der []byte, this, next time.Time, kind uint8) answer {
	buf := make([]byte, len(der)+trailer)
	n := copy(buf, der)
	sum := sha256.Sum256(der)
	copy(buf[n:n+8], sum[:8])
	binary.BigEndian.PutUint32(buf[n+8:], uint32(this.Unix()))
	binary.BigEndian.PutUint32(buf[n+12:], uint32(next.Unix()))
	buf[n+16] = kind
	return answer{buf: buf}
}

func (a answer) der() []byte  { return a.buf[: len(a.buf)-trailer : len(a.buf)-trailer] }
func (a answer) tail() []byte { return a.buf[len(a.buf)-trailer:] }
func (a answer) this() int64  { return int64(binary.BigEndian.Uint32(a.tail()[8:])) }
func (a answer) next() int64  { return int64(binary.BigEndian.Uint32(a.tail()[12:])) }
func (a answer) kind() uint8  { return a.tail()[16] }

// response is the answer as the responder serves it.
func (a answer) response(cache string) *Response {
	der := a.der()
	r := &Response{DER: der, ThisUpdate: time.Unix(a.this(), 0), NextUpdate: time.Unix(a.next(), 0), Answer: kindNames[a.kind()], Cache: cache}
	vals := make([]string, 4) // one allocation for the four header values
	vals[0] = `"` + hex.EncodeToString(a.tail()[:8]) + `"`
	vals[1] = r.ThisUpdate.UTC().Format(http.TimeFormat)
	vals[2] = r.NextUpdate.UTC().Format(http.TimeFormat)
	vals[3] = strconv.Itoa(len(der))
	r.etag = vals[0]
	r.hETag, r.hLastModified, r.hExpires, r.hLength = vals[0:1:1], vals[1:2:2], vals[2:3:3], vals[3:4:4]
	return r
}

// answerCache is the byte-bounded answer cache with its revocation guard.
type answerCache struct {
	c *otter.Cache[answerKey, answer]

	mu      sync.Mutex
	epoch   uint64
	floor   uint64              // reads that began before it are not cached
	revoked map[[20]byte]uint64 // serial → epoch of its latest revocation
}

// maxRevokedTracked bounds the revocation guard's memory; past it the
// guard forgets and refuses every read begun before (a brief, safe loss of
// cache fills).
const maxRevokedTracked = 1 << 16

func newAnswerCache(maxBytes uint64) (*answerCache, error) {
	if maxBytes == 0 {
		maxBytes = DefaultCacheBytes
	}
	c, err := otter.New(&otter.Options[answerKey, answer]{
		MaximumWeight: maxBytes,
		Weigher:       func(_ answerKey, a answer) uint32 { return uint32(len(a.buf)) + answerOverhead },
	})
	if err != nil {
		return nil, err
	}
	return &answerCache{c: c, revoked: map[[20]byte]uint64{}}, nil
}

func (ac *answerCache) get(k answerKey) (answer, bool) { return ac.c.GetIfPresent(k) }

// begin marks the start of a read from the store.
func (ac *answerCache) begin() uint64 {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	return ac.epoch
}

// put caches what a read begun at since found, unless its certificate was
// revoked meanwhile.
func (ac *answerCache) put(k answerKey, a answer, since uint64) {
	ac.mu.Lock()
	stale := since < ac.floor || ac.revoked[k.serial] > since
	ac.mu.Unlock()
	if !stale {
		ac.c.Set(k, a)
	}
}

// revoke invalidates a certificate's answers and guards against reads in
// flight putting an older status back.
func (ac *answerCache) revoke(serial *big.Int) {
	k, ok := keyOf(serial, 0)
	if !ok {
		return
	}
	ac.mu.Lock()
	ac.epoch++
	if len(ac.revoked) >= maxRevokedTracked {
		ac.revoked = map[[20]byte]uint64{}
		ac.floor = ac.epoch
	}
	ac.revoked[k.serial] = ac.epoch
	ac.mu.Unlock()
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		k.hash = uint8(h)
		ac.c.Invalidate(k)
	}
}

// size and weight report the cache for metrics.
func (ac *answerCache) size() int        { return ac.c.EstimatedSize() }
func (ac *answerCache) weight() uint64   { return ac.c.WeightedSize() }
func (ac *answerCache) capacity() uint64 { return ac.c.GetMaximum() }

// Lookups reads what answers need, for many certificates at once.
type Lookups interface {
	LookupOCSP(ctx context.Context, hash string, serials []pki.Serial) (map[pki.Serial]pki.OCSPLookup, error)
}

// batcher turns concurrent cache misses into few reads: a miss that finds
// fewer than maxInflight reads running leads one, taking every pending
// miss (up to maxBatch); the others wait for its answer. Alone, a miss is
// read at once; in a storm, misses that arrive together are read together.
type batcher struct {
	lookups Lookups

	mu       sync.Mutex
	pending  []*lookupCall
	inflight int
	batches  atomic.Uint64
	reads    atomic.Uint64
}

const (
	maxBatch    = 256
	maxInflight = 2
	// batchTimeout bounds one read, whoever's request it serves.
	batchTimeout = 5 * time.Second
)

type lookupCall struct {
	hash   string
	serial pki.Serial
	done   chan struct{}
	res    pki.OCSPLookup
	found  bool
	err    error
}

// get returns the lookup of serial for hash; found is false for a serial
// never issued.
func (b *batcher) get(ctx context.Context, hash string, serial pki.Serial) (pki.OCSPLookup, bool, error) {
	c := &lookupCall{hash: hash, serial: serial, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, c)
	lead := b.inflight < maxInflight
	if lead {
		b.inflight++
	}
	b.mu.Unlock()
	if lead {
		b.drain()
	}
	select {
	case <-c.done:
		return c.res, c.found, c.err
	case <-ctx.Done():
		return pki.OCSPLookup{}, false, ctx.Err()
	}
}

// drain reads pending misses in batches until none is left.
func (b *batcher) drain() {
	for {
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.inflight--
			b.mu.Unlock()
			return
		}
		n := min(len(b.pending), maxBatch)
		batch := make([]*lookupCall, n)
		copy(batch, b.pending)
		b.pending = append(b.pending[:0], b.pending[n:]...)
		b.mu.Unlock()
		b.read(batch)
	}
}

// read answers a batch with one query per CertID hash.
func (b *batcher) read(batch []*lookupCall) {
	byHash := map[string][]*lookupCall{}
	for _, c := range batch {
		byHash[c.hash] = append(byHash[c.hash], c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	for hash, calls := range byHash {
		seen := make(map[pki.Serial]bool, len(calls))
		serials := make([]pki.Serial, 0, len(calls))
		for _, c := range calls {
			if !seen[c.serial] {
				seen[c.serial] = true
				serials = append(serials, c.serial)
			}
		}
		res, err := b.lookups.LookupOCSP(ctx, hash, serials)
		b.batches.Add(1)
		b.reads.Add(uint64(len(serials)))
		for _, c := range calls {
			c.res, c.found = res[c.serial]
			c.err = err
			close(c.done)
		}
	}
}

// RegisterCache exports the answer cache's figures: entries, bytes held
// and allowed, and the store reads its misses made (and in how many
// batches).
func RegisterCache(reg prometheus.Registerer, c *CacheSource) error {
	if reg == nil {
		return nil
	}
	for _, col := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleetpki_ocsp_cache_entries", Help: "OCSP answers in the cache."},
			func() float64 { return float64(c.answers.size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleetpki_ocsp_cache_bytes", Help: "Bytes the cached OCSP answers take (DER and bookkeeping)."},
			func() float64 { return float64(c.answers.weight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleetpki_ocsp_cache_capacity_bytes", Help: "The cache's bound (--ocsp-cache-bytes)."},
			func() float64 { return float64(c.answers.capacity()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleetpki_ocsp_store_reads_total", Help: "Certificates read from the store on cache misses."},
			func() float64 { return float64(c.batch.reads.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleetpki_ocsp_store_batches_total", Help: "Store queries those reads took (misses arriving together are read together)."},
			func() float64 { return float64(c.batch.batches.Load()) }),
	} {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}
