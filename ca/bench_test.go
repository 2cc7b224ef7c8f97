package ca

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// benchCallers is the number of concurrent Issue callers, like a busy
// factory line with several stations.
const benchCallers = 16

func parallelism() int { return max(1, benchCallers/runtime.GOMAXPROCS(0)) }

// BenchmarkIssue measures Issue end to end (CSR parse and check, template,
// signing, in-memory commit) with 16 concurrent callers on the P-256 hierarchy.
func BenchmarkIssue(b *testing.B) {
	c := newTestCA(b, newMemStore())
	csr := makeCSR(b, ecKey(b, elliptic.P256()))
	var n atomic.Int64
	b.SetParallelism(parallelism())
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprint("bench-", n.Add(1))
			if _, err := c.Issue(context.Background(), IssueRequest{DeviceID: id, CSR: csr}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCreateCertificateRaw is the floor under BenchmarkIssue:
// x509.CreateCertificate alone, same callers, same template and keys.
func BenchmarkCreateCertificateRaw(b *testing.B) {
	c := newTestCA(b, newMemStore())
	h := c.Hierarchy()
	devKey := ecKey(b, elliptic.P256())
	iss := issue(b, c, "template-source")
	tmpl := *iss.Certificate // the very certificate Issue produced, as the template
	tmpl.SerialNumber = newSerial()
	b.SetParallelism(parallelism())
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t := tmpl
			t.SerialNumber = newSerial()
			if _, err := x509.CreateCertificate(rand.Reader, &t, h.Intermediate(), devKey.Public(), h.Signer()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
