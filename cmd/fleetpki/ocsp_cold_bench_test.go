package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/ocspresponder"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/postgres"
	"github.com/fleetpki/fleetpki/store/postgres/pgtest"
)

// BenchmarkOCSPCold is a whole fleet asking at once: N certificates
// (default 200,000; OCSP_COLD_N=1000000 for a million) issued by the CA
// into Postgres with their pre-signed answers, serve freshly started, then
// wrk with 16 connections: cold (every request another certificate), then
// hot (1,000 certificates), in one run. It reports both rates and p99s,
// the heap per cached answer against its DER size, and serve's RSS after
// every certificate was asked once.
//
//	make bench BENCH=OCSPCold
//	OCSP_COLD_N=1000000 make bench BENCH=OCSPCold
func BenchmarkOCSPCold(b *testing.B) {
	needTool(b, "wrk")
	n := 200000
	if v, err := strconv.Atoi(os.Getenv("OCSP_COLD_N")); err == nil && v > 0 {
		n = v
	}
	db := pgtest.NewDatabase(b)
	data := filepath.Join(b.TempDir(), "data")
	mustRun(b, "", "init", "--data-dir", data, "--database-url", db)
	start := time.Now()
	reqs := populateOCSP(b, data, db, n)
	b.Logf("%d certificates issued and pre-signed in %v", n, time.Since(start).Round(time.Second))

	pprof := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	srv := startServe(b, "--data-dir", data, "--database-url", db, "--http-addr", "127.0.0.1:0", "--mqtt-addr", "", "--pprof-addr", pprof)
	pid := srv.cmd.Process.Pid
	waitFor(10*time.Second, func() bool {
		r, err := http.Get("http://" + pprof + "/debug/pprof/")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	})
	heap := func() (float64, float64) { // heap in use after a collection, cached answers
		getBody(b, "http://"+pprof+"/debug/pprof/heap?gc=1")
		m := string(getBody(b, srv.url("/metrics")))
		return metricValue(b, m, "go_memstats_heap_alloc_bytes"), metricValue(b, m, "fleetpki_ocsp_cache_entries")
	}
	heap0, entries0 := heap()

	mrand.Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })
	// Cold: wrk walks the shuffled list once at most (5 s at 40k/s stays
	// under 200k); hot: the first 1,000, which the cold run asked first.
	coldScript := wrkGETScript(b, reqs)
	hotScript := wrkGETScript(b, reqs[:1000])
	dur := max(5*time.Second, time.Duration(n/40000)*time.Second)
	var profiled sync.WaitGroup
	if path := os.Getenv("OCSP_COLD_PROFILE"); path != "" {
		// A CPU profile of serve during the cold run, for `go tool pprof`.
		profiled.Add(1)
		go func() {
			defer profiled.Done()
			_ = os.WriteFile(path, getBody(b, "http://"+pprof+"/debug/pprof/profile?seconds="+strconv.Itoa(int(dur.Seconds())-1)), 0o600)
		}()
	}
	cold := wrk(b, srv.url("/ocsp"), coldScript, dur)
	profiled.Wait()
	m := string(getBody(b, srv.url("/metrics")))
	batch := metricValue(b, m, "fleetpki_ocsp_store_reads_total") / metricValue(b, m, "fleetpki_ocsp_store_batches_total")
	heap1, entries1 := heap()
	hot := wrk(b, srv.url("/ocsp"), hotScript, 5*time.Second)
	if cold.total >= n {
		b.Fatalf("the cold run sent %d requests for %d certificates: some were not cold", cold.total, n)
	}
	coldPerAnswer := (heap1 - heap0) / math.Max(1, entries1-entries0)
	der := float64(len(getBody(b, srv.url("/ocsp/")+base64.StdEncoding.EncodeToString(reqs[0]))))

	// Every certificate asked once (with the Go client, untimed), then RSS.
	askAll(b, srv.url("/ocsp/"), reqs)
	heap2, entries2 := heap()
	rss := vmRSS(b, pid)
	// Per cached answer once the cache is large (the parsed-request cache
	// and the process's fixed costs amortised), as a fleet's would be.
	perAnswer := (heap2 - heap0) / math.Max(1, entries2-entries0)

	b.ReportMetric(cold.rate, "cold_resp/s")
	b.ReportMetric(cold.p99, "cold_p99_ms")
	b.ReportMetric(hot.rate, "hot_resp/s")
	b.ReportMetric(hot.p99, "hot_p99_ms")
	b.ReportMetric(cold.rate/hot.rate, "cold/hot")
	b.ReportMetric(perAnswer, "heap_B/answer")
	b.ReportMetric(der, "der_B")
	b.ReportMetric(batch, "certs/read")
	b.ReportMetric(float64(rss)/(1<<20), "rss_MiB")
	b.Logf("N=%d cold %.0f/s p99 %.1f ms, hot %.0f/s p99 %.1f ms (cold/hot %.2f); after the cold run %.0f heap bytes per cached answer (%0.f answers); after all %d asked once: %0.f answers cached, %.0f heap bytes per answer of %.0f DER bytes (%.2fx), heap %.0f MiB, RSS %.0f MiB",
		n, cold.rate, cold.p99, hot.rate, hot.p99, cold.rate/hot.rate, coldPerAnswer, entries1-entries0, n, entries2, perAnswer, der, perAnswer/der, heap2/(1<<20), float64(rss)/(1<<20))
}

// populateOCSP issues n certificates through the CA (one key, n device ids)
// into the store and has a presigner sign and store both answers of each;
// it returns an OCSP request (SHA-1 CertID) for each certificate.
func populateOCSP(b *testing.B, data, db string, n int) [][]byte {
	ctx := context.Background()
	st, err := postgres.Open(ctx, db, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	h, err := ca.LoadHierarchy(ctx, data, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := ca.New(ctx, ca.Config{Hierarchy: h, Store: st, PublicURL: "http://127.0.0.1:8080"})
	if err != nil {
		b.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	reqs := make([][]byte, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				iss, err := c.Issue(ctx, ca.IssueRequest{DeviceID: fmt.Sprintf("fleet-%07d", i), CSR: csr})
				if err != nil {
					b.Error(err)
					return
				}
				reqs[i], _ = ocsp.CreateRequest(iss.Certificate, h.Intermediate(), &ocsp.RequestOptions{Hash: 0})
			}
		}()
	}
	wg.Wait()
	rkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rcert, err := c.IssueOCSPResponderCert(ctx, rkey.Public(), ocspresponder.ResponderValidity)
	if err != nil {
		b.Fatal(err)
	}
	signer := &ocspresponder.Signer{Issuer: h.Intermediate(), Responder: rcert, Key: rkey}
	p, err := ocspresponder.NewPresigner(ocspresponder.PresignConfig{Store: st, IssuerKeyID: h.IssuerKeyID(), Signer: func() *ocspresponder.Signer { return signer }})
	if err != nil {
		b.Fatal(err)
	}
	signed, err := p.SweepOnce(ctx)
	if err != nil || signed < 2*n {
		b.Fatalf("pre-signed %d answers for %d certificates: %v", signed, n, err)
	}
	return reqs
}

// wrkGETScript writes a wrk script that walks reqs once in order, as GETs.
func wrkGETScript(b *testing.B, reqs [][]byte) string {
	var s strings.Builder
	s.WriteString("reqs = {")
	for _, r := range reqs {
		s.WriteString(`"` + base64.StdEncoding.EncodeToString(r) + `",`)
	}
	s.WriteString("}\ni = 0\nrequest = function()\n  i = i % #reqs + 1\n  return wrk.format(\"GET\", wrk.path .. \"/\" .. reqs[i])\nend\n")
	p := filepath.Join(b.TempDir(), "reqs.lua")
	if err := os.WriteFile(p, []byte(s.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return p
}

type wrkResult struct {
	rate, p99 float64
	total     int
}

// wrk runs wrk (1 thread, 16 connections) against url for d.
func wrk(b *testing.B, url, script string, d time.Duration) wrkResult {
	o, err := exec.Command("wrk", "-t", "1", "-c", "16", "-d", strconv.Itoa(int(d.Seconds()))+"s", "--latency", "-s", script, url).CombinedOutput()
	out := string(o)
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	if strings.Contains(out, "Non-2xx") {
		b.Fatalf("wrk saw errors:\n%s", out)
	}
	m := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(out)
	total, _ := strconv.Atoi(m[1])
	return wrkResult{rate: wrkValue(b, out, "Requests/sec:"), p99: wrkValue(b, out, "99%"), total: total}
}

// askAll asks about every certificate once (16 clients), untimed.
func askAll(b *testing.B, base string, reqs [][]byte) {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 30 * time.Second}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(reqs) {
					return
				}
				resp, err := c.Get(base + base64.StdEncoding.EncodeToString(reqs[i]))
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("answer %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// metricValue reads an unlabelled metric from a Prometheus text page.
func metricValue(b *testing.B, page, name string) float64 {
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		b.Fatalf("no %s in /metrics", name)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// vmRSS is a process's resident set size in bytes.
func vmRSS(b *testing.B, pid int) int64 {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindStringSubmatch(string(s))
	kb, _ := strconv.ParseInt(m[1], 10, 64)
	return kb << 10
}
