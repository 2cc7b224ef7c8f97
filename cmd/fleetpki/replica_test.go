package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/store/postgres/pgtest"
)

// TestReplicasShareRevocations: two serve processes on one Postgres (and one
// CA); a revocation made through the first is answered as revoked by the
// second's OCSP responder within a second, although the second had cached
// a "good" answer.
func TestReplicasShareRevocations(t *testing.T) {
	db := pgtest.NewDatabase(t)
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	a := startServe(t, "--data-dir", dirA, "--http-addr", "127.0.0.1:0", "--database-url", db)
	// The second replica shares the CA: its key files are copied, as an
	// operator would mount the same secret.
	if err := os.MkdirAll(dirB, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(dirA, "ca"), filepath.Join(dirB, "ca")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	b := startServe(t, "--data-dir", dirB, "--http-addr", "127.0.0.1:0", "--database-url", db)
	if a.fingerprint != b.fingerprint {
		t.Fatal("the replicas have different CAs")
	}
	secret := mustRun(t, "", "credential", "create", "--data-dir", dirA, "--database-url", db, "--name", "line").lastLine()
	token := mustRun(t, "", "user", "token", "--data-dir", dirA, "--database-url", db, "--name", "admin").lastLine()
	rootDER := []byte(get(t, a.url("/ca/root.crt"), 200, "", ""))
	certDir := t.TempDir()
	serial := enrollDevice(t, a, rootDER, secret, "sensor-1", certDir)
	leafPEM, _ := os.ReadFile(filepath.Join(certDir, "device.crt"))
	blk, _ := pem.Decode(leafPEM)
	leaf, _ := x509.ParseCertificate(blk.Bytes)
	issuer, _ := x509.ParseCertificate([]byte(get(t, a.url("/ca/intermediate.crt"), 200, "", "")))
	query := func(s *server) int {
		req, _ := ocsp.CreateRequest(leaf, issuer, nil)
		resp, err := http.Post(s.url("/ocsp"), "application/ocsp-request", bytes.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		r, err := ocsp.ParseResponseForCert(body, leaf, issuer)
		if err != nil {
			t.Fatalf("OCSP: %v", err)
		}
		return r.Status
	}
	if query(b) != ocsp.Good {
		t.Fatal("replica B does not answer good before the revocation")
	}

	root, _ := x509.ParseCertificate(rootDER)
	pool := x509.NewCertPool()
	pool.AddCert(root)
	req, _ := http.NewRequest("POST", "https://"+a.httpsAddr+"/api/v1/certificates/"+serial+"/revoke", strings.NewReader(`{"reason":"keyCompromise"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}).Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke through A: %v %v", resp, err)
	}
	resp.Body.Close()
	start := time.Now()
	for query(b) != ocsp.Revoked {
		if time.Since(start) > time.Second {
			t.Fatalf("replica B still does not answer revoked %v after A's revocation", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("replica B answered revoked %v after the revocation through A", time.Since(start))

	// One replica generates the CRLs (advisory lock); both serve the same
	// CRL, which lists the revoked serial within a few seconds.
	gen := 0
	for _, s := range []*server{a, b} {
		gen += strings.Count(s.log.String(), `generating the CRLs for the replicas" issuer_key_id=`+hex.EncodeToString(issuer.SubjectKeyId))
	}
	if gen != 1 {
		t.Errorf("%d replicas generate the issuing CA's CRL, want exactly 1", gen)
	}
	for {
		ca, cb := get(t, a.url("/crl"), 200, "", ""), get(t, b.url("/crl"), 200, "", "")
		crl, err := x509.ParseRevocationList([]byte(cb))
		if err != nil {
			t.Fatal(err)
		}
		if ca == cb && len(crl.RevokedCertificateEntries) == 1 && crl.RevokedCertificateEntries[0].SerialNumber.Text(16) == serial {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the replicas do not serve the same CRL listing %s %v after the revocation", serial, time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("both replicas served the same CRL listing the revocation %v after it", time.Since(start))
}
