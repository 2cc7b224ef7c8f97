package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/internal/testenv"
	"github.com/fleetpki/fleetpki/store/postgres/pgtest"
)

// BenchmarkEnrollHTTPS drives a real `fleetpki serve` over HTTPS on
// 127.0.0.1 (keep-alive, CSRs made beforehand) with 1, 16 and 64 concurrent
// clients, on SQLite and on Postgres, and reports enrollments/s and the
// p50/p99 latency. b.N is the number of enrollments; it stops by itself.
//
//	make bench BENCH=EnrollHTTPS        (or)
//	go test -run '^$' -bench EnrollHTTPS -benchtime 3000x ./cmd/fleetpki/
func BenchmarkEnrollHTTPS(b *testing.B) {
	backends := []struct {
		name string
		args func(b *testing.B) []string
	}{
		{"sqlite", func(*testing.B) []string { return nil }},
		{"postgres", func(b *testing.B) []string { return []string{"--database-url", pgtest.NewDatabase(b)} }},
	}
	for _, be := range backends {
		for _, clients := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/clients=%d", be.name, clients), func(b *testing.B) {
				data := filepath.Join(b.TempDir(), "data")
				db := be.args(b)
				srv := startServe(b, append([]string{"--data-dir", data, "--http-addr", "127.0.0.1:0", "--enroll-rate", "0"}, db...)...)
				secret := mustRun(b, "", append([]string{"credential", "create", "--data-dir", data, "--name", "bench"}, db...)...).lastLine()
				runEnrollLoad(b, srv, secret, clients)
			})
		}
	}
}

func runEnrollLoad(b *testing.B, srv *server, secret string, clients int) {
	resp, err := http.Get(srv.url("/ca/root.crt"))
	if err != nil {
		b.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	root, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	httpc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
	// CSRs beforehand: the load generator shares the 2 cores with the server.
	csrs := make([][]byte, min(b.N, 256))
	for i := range csrs {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		d, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
		csrs[i] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: d})
	}
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i], _ = json.Marshal(map[string]string{"device_id": fmt.Sprintf("bench-%d", i), "csr": string(csrs[i%len(csrs)])})
	}
	url := "https://" + srv.httpsAddr + "/api/v1/enroll"
	// fire sends bodies from clients goroutines, recording each latency.
	fire := func(bodies [][]byte, lat []time.Duration) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= len(bodies) {
						return
					}
					req, _ := http.NewRequest("POST", url, bytes.NewReader(bodies[i]))
					req.Header.Set("Authorization", "Bearer "+secret)
					req.Header.Set("Content-Type", "application/json")
					t0 := time.Now()
					resp, err := httpc.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					lat[i] = time.Since(t0)
					if resp.StatusCode != 201 {
						b.Errorf("HTTP %d", resp.StatusCode)
						return
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	// Warm up (connections, TLS sessions, caches, the database's pages), so
	// the figures are the steady state, not the first second.
	warm := make([][]byte, 4*clients)
	for i := range warm {
		warm[i], _ = json.Marshal(map[string]string{"device_id": fmt.Sprintf("warm-%d", i), "csr": string(csrs[i%len(csrs)])})
	}
	fire(warm, make([]time.Duration, len(warm)))
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	elapsed := fire(bodies, lat)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "enroll/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
}

// BenchmarkEnrollHSM is enrollment with the issuing key in SoftHSM2 beside
// file keys, in the same run: 64 clients on Postgres. SoftHSM signs in
// software, so the ratio is the cost of the PKCS#11 path (sessions, the
// library's locking, copies), not of a hardware HSM.
//
//	make bench BENCH=EnrollHSM COUNT=3
func BenchmarkEnrollHSM(b *testing.B) {
	for _, keys := range []string{"file", "softhsm"} {
		b.Run("keys="+keys+"/postgres/clients=64", func(b *testing.B) {
			data := filepath.Join(b.TempDir(), "data")
			db := []string{"--database-url", pgtest.NewDatabase(b)}
			if keys == "softhsm" {
				mustRun(b, "", append([]string{"init", "--data-dir", data, "--kms", testenv.SoftHSM(b).URI}, db...)...)
			}
			srv := startServe(b, append([]string{"--data-dir", data, "--http-addr", "127.0.0.1:0", "--enroll-rate", "0"}, db...)...)
			secret := mustRun(b, "", append([]string{"credential", "create", "--data-dir", data, "--name", "bench"}, db...)...).lastLine()
			runEnrollLoad(b, srv, secret, 64)
		})
	}
}
