package main

import (
	"bytes"
	"crypto/x509"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/store/postgres/pgtest"
)

// A backup taken while enrollments stream in, on each store; the disk (and
// the database) lost; a restore into empty ones: every certificate a
// client had received when the backup began is there, the revocation
// holds over OCSP, the audit chain verifies, the next CRL's number is above
// every number published before the loss (after the backup too), and
// enrollment goes on.
func TestBackupRestoreUnderLoad(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			var db []string
			var openDB func() *sql.DB
			if backend == "postgres" {
				url := pgtest.NewDatabase(t)
				db = []string{"--database-url", url}
				openDB = func() *sql.DB { c, _ := sql.Open("pgx", url); return c }
			} else {
				openDB = func() *sql.DB {
					c, _ := sql.Open("sqlite", "file:"+filepath.Join(data, "fleetpki.db")+"?mode=ro")
					return c
				}
			}
			args := func(a ...string) []string { return append(append(a, "--data-dir", data), db...) }
			srv := startServe(t, args("--http-addr", "127.0.0.1:0", "--enroll-rate", "0")...)
			secret := mustRun(t, "", args("credential", "create", "--name", "line")...).lastLine()
			rootDER := []byte(get(t, srv.url("/ca/root.crt"), 200, "", ""))
			leakDir := t.TempDir()
			leaked := enrollDevice(t, srv, rootDER, secret, "leaked", leakDir)
			mustRun(t, "", args("revoke", "--serial", leaked, "--reason", "keyCompromise")...)

			// Enrollments stream in while the backup runs.
			var mu sync.Mutex
			received := map[string]time.Time{}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						serial := enrollDevice(t, srv, rootDER, secret, fmt.Sprintf("load-%d-%d", w, i), t.TempDir())
						mu.Lock()
						received[serial] = time.Now()
						mu.Unlock()
					}
				}()
			}
			time.Sleep(500 * time.Millisecond)
			backupStart := time.Now()
			file := filepath.Join(dir, "fleet.backup")
			pass, wrong := filepath.Join(dir, "passphrase"), filepath.Join(dir, "wrong")
			_ = os.WriteFile(pass, []byte("correct horse battery\n"), 0o600)
			_ = os.WriteFile(wrong, []byte("wrong horse battery\n"), 0o600)
			r := runCLI(t, "", args("backup", "--out", file, "--passphrase-file", pass)...)
			if r.code != 0 {
				t.Fatalf("backup: %s", r.stderr)
			}
			time.Sleep(300 * time.Millisecond)
			close(stop)
			wg.Wait()
			// Life goes on after the backup: another revocation, another CRL.
			other := enrollDevice(t, srv, rootDER, secret, "after-backup", t.TempDir())
			mustRun(t, "", args("revoke", "--serial", other, "--reason", "superseded")...)
			time.Sleep(2 * time.Second)
			srv.stop(t)
			conn := openDB()
			var maxCRL int64
			if err := conn.QueryRow("SELECT MAX(number) FROM crls").Scan(&maxCRL); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			var before []string
			mu.Lock()
			for s, at := range received {
				if at.Before(backupStart) {
					before = append(before, s)
				}
			}
			mu.Unlock()
			if len(before) < 5 {
				t.Fatalf("only %d enrollments before the backup: the load did not run", len(before))
			}

			// The disk is lost.
			if err := os.RemoveAll(data); err != nil {
				t.Fatal(err)
			}
			if backend == "postgres" {
				db = []string{"--database-url", pgtest.NewDatabase(t)}
				url := db[1]
				openDB = func() *sql.DB { c, _ := sql.Open("pgx", url); return c }
			}
			if r := runCLI(t, "", args("restore", "--in", file, "--passphrase-file", wrong)...); r.code == 0 || !strings.Contains(r.stderr, "cannot be decrypted") {
				t.Fatal("a wrong passphrase restored the backup")
			}
			if r := runCLI(t, "", args("restore", "--in", file, "--passphrase-file", pass)...); r.code != 0 {
				t.Fatalf("restore: %s", r.stderr)
			}
			mustRun(t, "", args("audit", "verify")...)
			conn = openDB()
			for _, s := range before {
				var n int
				if err := conn.QueryRow("SELECT COUNT(*) FROM certificates WHERE serial = $1", s).Scan(&n); err != nil || n != 1 {
					t.Fatalf("certificate %s, received before the backup, is missing after the restore (%v)", s, err)
				}
			}
			conn.Close()
			t.Logf("%d certificates received before the backup, all restored", len(before))

			srv = startServe(t, args("--http-addr", "127.0.0.1:0", "--enroll-rate", "0")...)
			crl, err := x509.ParseRevocationList([]byte(get(t, srv.url("/crl"), 200, "", "")))
			if err != nil || crl.Number.Int64() <= maxCRL {
				t.Fatalf("the first CRL after the restore is number %v; %d was published before the loss (%v)", crl.Number, maxCRL, err)
			}
			leaf := parsePEMCerts(t, mustRead(t, filepath.Join(leakDir, "device.crt")))[0]
			issuer, _ := x509.ParseCertificate([]byte(get(t, srv.url("/ca/intermediate.crt"), 200, "", "")))
			req, _ := ocsp.CreateRequest(leaf, issuer, nil)
			resp, err := http.Post(srv.url("/ocsp"), "application/ocsp-request", bytes.NewReader(req))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if a, err := ocsp.ParseResponse(body, issuer); err != nil || a.Status != ocsp.Revoked {
				t.Fatalf("OCSP for the revoked device after the restore: %v %+v", err, a)
			}
			enrollDevice(t, srv, rootDER, secret, "after-restore", t.TempDir())
		})
	}
}
