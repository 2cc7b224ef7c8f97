package main

import (
	"bytes"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/store/postgres/pgtest"
)

// copyDir copies a golden data directory; key files get 0600.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mode := fi.Mode().Perm()
		if strings.HasSuffix(rel, ".key") {
			mode = 0o600 // git keeps no modes but the executable bit; the CA refuses readable keys
		}
		return os.WriteFile(filepath.Join(to, rel), b, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A database made by the previous release (schema 6: scripts/make-golden.sh
// run on that release's code, three devices of which one revoked) is
// migrated forward by this one, on SQLite and on Postgres: nothing pending
// after, the audit chain verifies, the devices and the revocation are
// there (OCSP says revoked), the next CRL's number is above every number
// published before, and enrollment goes on.
func TestUpgradeFromGolden(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			var db []string
			var maxCRL func() int64
			if backend == "sqlite" {
				copyDir(t, "testdata/golden/sqlite-v6", data)
				maxCRL = func() int64 { return int64(countRows(t, data, "SELECT COALESCE(MAX(number), 0) FROM crls")) }
			} else {
				url := pgtest.NewDatabase(t)
				if out, err := exec.Command("psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-f", "testdata/golden/postgres-v6.sql").CombinedOutput(); err != nil {
					t.Fatalf("restore the golden dump: %v\n%s", err, out)
				}
				copyDir(t, "testdata/golden/postgres-v6-ca", data)
				db = []string{"--database-url", url}
				maxCRL = func() int64 {
					conn, err := sql.Open("pgx", url)
					if err != nil {
						t.Fatal(err)
					}
					defer conn.Close()
					var n int64
					if err := conn.QueryRow("SELECT COALESCE(MAX(number), 0) FROM crls").Scan(&n); err != nil {
						t.Fatal(err)
					}
					return n
				}
			}
			before := maxCRL()
			if before == 0 {
				t.Fatal("the golden database holds no CRL")
			}
			args := func(a ...string) []string { return append(append(a, "--data-dir", data), db...) }
			status := mustRun(t, "", args("migrate", "--status")...)
			if !strings.Contains(status.stdout, "1\tapplied") || !strings.Contains(status.stdout, "\tpending") {
				t.Fatalf("status before the upgrade:\n%s", status.stdout)
			}
			mustRun(t, "", args("migrate")...)
			if after := mustRun(t, "", args("migrate", "--status")...); strings.Contains(after.stdout, "pending") {
				t.Fatalf("pending after the upgrade:\n%s", after.stdout)
			}
			mustRun(t, "", args("audit", "verify")...)

			srv := startServe(t, args("--http-addr", "127.0.0.1:0", "--enroll-rate", "0")...)
			token := mustRun(t, "", args("user", "token", "--name", "admin")...).lastLine()
			api := func(path string) []byte {
				t.Helper()
				out, err := exec.Command("curl", "-sSfk", "-H", "Authorization: Bearer "+token, "https://"+srv.httpsAddr+path).Output()
				if err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				return out
			}
			var devices struct {
				Items []struct {
					ID, Kind, Status string
					Metadata         map[string]string
				}
			}
			_ = json.Unmarshal(api("/api/v1/devices"), &devices)
			got := map[string]string{}
			for _, d := range devices.Items {
				if d.Metadata["lot"] != "golden" || d.Kind != "device" {
					t.Errorf("device %s after the upgrade: %+v", d.ID, d)
				}
				got[d.ID] = d.Status
			}
			if got["golden-1"] != "active" || got["golden-2"] != "revoked" || got["golden-3"] != "active" || len(got) != 3 {
				t.Fatalf("devices after the upgrade: %v", got)
			}
			var certs struct{ Items []struct{ Serial string } }
			_ = json.Unmarshal(api("/api/v1/certificates?device_id=golden-2"), &certs)
			var one struct{ Certificate string }
			_ = json.Unmarshal(api("/api/v1/certificates/"+certs.Items[0].Serial), &one)
			blk, _ := pem.Decode([]byte(one.Certificate))
			leaf, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatalf("golden-2's certificate: %v", err)
			}
			issuer, _ := x509.ParseCertificate([]byte(get(t, srv.url("/ca/intermediate.crt"), 200, "", "")))
			req, _ := ocsp.CreateRequest(leaf, issuer, nil)
			resp, err := http.Post(srv.url("/ocsp"), "application/ocsp-request", bytes.NewReader(req))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if r, err := ocsp.ParseResponse(body, issuer); err != nil || r.Status != ocsp.Revoked || r.RevocationReason != ocsp.KeyCompromise {
				t.Fatalf("OCSP for the revoked golden device: %v %+v", err, r)
			}
			crl, err := x509.ParseRevocationList([]byte(get(t, srv.url("/crl"), 200, "", "")))
			if err != nil || crl.Number.Int64() <= before || len(crl.RevokedCertificateEntries) != 1 ||
				crl.RevokedCertificateEntries[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
				t.Fatalf("the CRL after the upgrade: number %v (published before: up to %d), %d entries, %v", crl.Number, before, len(crl.RevokedCertificateEntries), err)
			}
			t.Logf("CRL number %v after the upgrade (published before: up to %d); golden-2 revoked over OCSP", crl.Number, before)
			secret := mustRun(t, "", args("credential", "create", "--name", "after-upgrade")...).lastLine()
			e := &enrollEnv{srv: srv, data: data, secret: secret, args: []string{"--server", "https://" + srv.httpsAddr, "--fingerprint", srv.fingerprint}}
			if r := e.enroll(t, "--device-id", "new-1", "--out", t.TempDir()); r.code != 0 {
				t.Fatalf("enrollment after the upgrade: %s", r.stderr)
			}
		})
	}
}

// A database migrated by a newer fleetpki is refused, by serve, migrate
// and migrate --status alike, with a message naming both versions.
func TestNewerSchemaRefused(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	mustRun(t, "", "migrate", "--data-dir", data)
	conn, err := sql.Open("sqlite", "file:"+filepath.Join(data, "fleetpki.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (999, 1)"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	for _, cmd := range [][]string{
		{"serve", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0", "--mqtt-addr", ""},
		{"migrate", "--data-dir", data},
		{"migrate", "--status", "--data-dir", data},
	} {
		r := runCLI(t, "", cmd...)
		if r.code == 0 || !strings.Contains(r.stderr, "newer than this fleetpki") || !strings.Contains(r.stderr, "999") {
			t.Errorf("%s on a newer schema: exit %d\n%s", cmd[0], r.code, r.stderr)
		}
	}
}
