package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// BenchmarkOCSPLoad loads a running serve's OCSP responder on 127.0.0.1 with
// requests for 1,000 distinct certificates (keep-alive, GET and POST, 16
// clients), and, in the same run, `openssl ocsp -index` on the same
// certificates as the baseline (one request per connection: it answers
// HTTP/1.0). Bounded by b.N requests per sub-benchmark.
//
//	make bench BENCH=OCSPLoad   (or)
//	go test -run '^$' -bench OCSPLoad -benchtime 20000x ./cmd/fleetpki/
func BenchmarkOCSPLoad(b *testing.B) {
	needTool(b, "openssl")
	dir := b.TempDir()
	data := filepath.Join(dir, "data")
	srv := startServe(b, "--data-dir", data, "--http-addr", "127.0.0.1:0", "--enroll-rate", "0")
	secret := mustRun(b, "", "credential", "create", "--data-dir", data, "--name", "bench").lastLine()
	rootDER := getBody(b, srv.url("/ca/root.crt"))
	issuer, _ := x509.ParseCertificate(getBody(b, srv.url("/ca/intermediate.crt")))

	// 1,000 certificates, through the API.
	const n = 1000
	reqs := make([][]byte, n)
	var index strings.Builder
	for i := range n {
		d := b.TempDir()
		enrollDevice(b, srv, rootDER, secret, fmt.Sprintf("dev-%04d", i), d)
		pemBytes, _ := os.ReadFile(filepath.Join(d, "device.crt"))
		blk, _ := pem.Decode(pemBytes)
		leaf, _ := x509.ParseCertificate(blk.Bytes)
		reqs[i], _ = ocsp.CreateRequest(leaf, issuer, nil)
		fmt.Fprintf(&index, "V\t%s\t\t%X\tunknown\t/CN=%s\n", leaf.NotAfter.UTC().Format("060102150405Z"), leaf.SerialNumber, leaf.Subject.CommonName)
	}

	b.Run("fleetpki/GET", func(b *testing.B) {
		loadOCSP(b, 16, true, func(i int) *http.Request {
			r, _ := http.NewRequest("GET", srv.url("/ocsp/")+base64.StdEncoding.EncodeToString(reqs[i%n]), nil)
			return r
		})
	})
	b.Run("fleetpki/POST", func(b *testing.B) {
		loadOCSP(b, 16, true, func(i int) *http.Request {
			r, _ := http.NewRequest("POST", srv.url("/ocsp"), bytes.NewReader(reqs[i%n]))
			r.Header.Set("Content-Type", "application/ocsp-request")
			return r
		})
	})

	// The baseline: openssl's responder (-multi 2: two worker processes, one
	// per core), signing with the issuing CA's key (a CA-signed response,
	// which RFC 6960 allows) on the same certificates.
	idx := filepath.Join(dir, "index.txt")
	_ = os.WriteFile(idx, []byte(index.String()), 0o600)
	issuerPEM := filepath.Join(dir, "issuer.pem")
	_ = os.WriteFile(issuerPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issuer.Raw}), 0o600)
	// -multi 2: two worker processes, one per core. (A single process
	// stalls under 16 concurrent connections.)
	{
		name := "openssl-multi2/POST"
		args := []string{"ocsp", "-index", idx, "-rsigner", issuerPEM, "-rkey", filepath.Join(data, "ca", "intermediate.key"),
			"-CA", issuerPEM, "-ndays", "1", "-multi", "2"}
		port := freePort(b)
		ctx, cancel := context.WithCancel(context.Background())
		ossl := exec.CommandContext(ctx, "openssl", append(args, "-port", strconv.Itoa(port))...)
		ossl.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // -multi forks: end the whole group
		ossl.Cancel = func() error { return syscall.Kill(-ossl.Process.Pid, syscall.SIGKILL) }
		if err := ossl.Start(); err != nil {
			b.Fatal(err)
		}
		for i := 0; ; i++ {
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				c.Close()
				break
			}
			if i > 100 {
				b.Fatal("openssl ocsp did not start")
			}
			time.Sleep(50 * time.Millisecond)
		}
		url := fmt.Sprintf("http://127.0.0.1:%d/", port)
		b.Run(name, func(b *testing.B) {
			loadOCSP(b, 16, false, func(i int) *http.Request {
				r, _ := http.NewRequest("POST", url, bytes.NewReader(reqs[i%n]))
				r.Header.Set("Content-Type", "application/ocsp-request")
				return r
			})
		})
		cancel()
		_ = ossl.Wait()
	}

	// wrk (one thread, 16 keep-alive connections, 5 s) costs the machine less
	// than the Go client above, so it shows more of fleetpki's own capacity.
	// (openssl's responder stalls under wrk with more connections than
	// workers, so its figures come from the Go client only.)
	if _, err := exec.LookPath("wrk"); err == nil {
		get, post := wrkScripts(b, reqs)
		b.Run("fleetpki/GET-wrk", func(b *testing.B) { runWrk(b, srv.url(""), "/ocsp", get) })
		b.Run("fleetpki/POST-wrk", func(b *testing.B) { runWrk(b, srv.url(""), "/ocsp", post) })
	}
}

// wrkScripts writes wrk Lua scripts that cycle through the requests, as
// GET /<prefix>/<base64> and as POST bodies.
func wrkScripts(b *testing.B, reqs [][]byte) (get, post string) {
	var g, p strings.Builder
	g.WriteString("reqs = {")
	p.WriteString("reqs = {")
	for _, r := range reqs {
		fmt.Fprintf(&g, "%q,", base64.StdEncoding.EncodeToString(r))
		p.WriteString(`"`)
		for _, c := range r {
			fmt.Fprintf(&p, "\\%d", c)
		}
		p.WriteString(`",`)
	}
	g.WriteString("}\ni = 0\nrequest = function()\n  i = i % #reqs + 1\n  return wrk.format(\"GET\", (wrk.path:gsub(\"/$\", \"\")) .. \"/\" .. reqs[i])\nend\n")
	p.WriteString("}\ni = 0\nrequest = function()\n  i = i % #reqs + 1\n  return wrk.format(\"POST\", wrk.path, {[\"Content-Type\"] = \"application/ocsp-request\"}, reqs[i])\nend\n")
	dir := b.TempDir()
	get, post = filepath.Join(dir, "get.lua"), filepath.Join(dir, "post.lua")
	_ = os.WriteFile(get, []byte(g.String()), 0o600)
	_ = os.WriteFile(post, []byte(p.String()), 0o600)
	return get, post
}

// runWrk loads base+path for 5 s and reports wrk's throughput and latencies.
func runWrk(b *testing.B, base, path, script string) {
	out, err := exec.Command("wrk", "-t", "1", "-c", "16", "-d", "5s", "--latency", "-s", script, base+path).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	b.ReportMetric(wrkValue(b, string(out), "Requests/sec:"), "resp/s")
	b.ReportMetric(wrkValue(b, string(out), "50%"), "p50_ms")
	b.ReportMetric(wrkValue(b, string(out), "99%"), "p99_ms")
	if strings.Contains(string(out), "Non-2xx") || wrkValue(b, string(out), "Requests/sec:") == 0 {
		b.Fatalf("wrk saw errors:\n%s", out)
	}
}

func loadOCSP(b *testing.B, clients int, keepAlive bool, mk func(i int) *http.Request) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, DisableKeepAlives: !keepAlive}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				t0 := time.Now()
				resp, err := c.Do(mk(i))
				if err != nil {
					b.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				if resp.StatusCode != 200 || len(body) < 100 {
					b.Errorf("answer %d, %d bytes", resp.StatusCode, len(body))
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/el.Seconds(), "resp/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
}

func getBody(b *testing.B, url string) []byte {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return body
}

// wrkValue reads the number after label in wrk's output (latencies in ms).
func wrkValue(b *testing.B, out, label string) float64 {
	i := strings.Index(out, label)
	if i < 0 {
		b.Fatalf("wrk output lacks %q:\n%s", label, out)
	}
	f := strings.Fields(out[i+len(label):])[0]
	mult := 1.0
	switch {
	case strings.HasSuffix(f, "us"):
		f, mult = strings.TrimSuffix(f, "us"), 0.001
	case strings.HasSuffix(f, "ms"):
		f = strings.TrimSuffix(f, "ms")
	case strings.HasSuffix(f, "s") && label != "Requests/sec:":
		f, mult = strings.TrimSuffix(f, "s"), 1000
	}
	v, err := strconv.ParseFloat(f, 64)
	if err != nil {
		b.Fatalf("wrk %s: %q", label, f)
	}
	return v * mult
}
