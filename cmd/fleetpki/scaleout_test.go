package main

import (
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/store/postgres/pgtest"
)

// Scale-out: three keyless `fleetpki ocsp` responders on one Postgres,
// behind one address (nginx, round robin, with an HTTP cache for GET as a
// CDN would be). Each answers alike (the same pre-signed bytes); a
// revocation reaches every one within a second; the cache in front serves
// repeated GETs itself and, with --ocsp-http-max-age, serves a revoked
// certificate's old answer no longer than that.
func TestOCSPScaleOut(t *testing.T) {
	needTool(t, "nginx", "curl")
	db := pgtest.NewDatabase(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	srv := startServe(t, "--data-dir", data, "--http-addr", "127.0.0.1:0", "--database-url", db)
	secret := mustRun(t, "", "credential", "create", "--data-dir", data, "--database-url", db, "--name", "line").lastLine()
	rootDER := []byte(get(t, srv.url("/ca/root.crt"), 200, "", ""))
	certDir := t.TempDir()
	serial := enrollDevice(t, srv, rootDER, secret, "sensor-1", certDir)
	chain := filepath.Join(dir, "chain.pem")
	_ = os.WriteFile(chain, []byte(get(t, srv.url("/ca.pem"), 200, "", "")), 0o600)
	leaf := parsePEMCerts(t, mustRead(t, filepath.Join(certDir, "device.crt")))[0]
	issuer := parsePEMCerts(t, mustRead(t, chain))[0]
	reqDER, _ := ocsp.CreateRequest(leaf, issuer, nil)
	path := "/ocsp/" + base64.StdEncoding.EncodeToString(reqDER)

	var responders []string
	for range 3 {
		addr, _ := startOCSPOnly(t, "--data-dir", filepath.Join(dir, "empty"), "--database-url", db, "--ca-file", chain, "--ocsp-http-max-age", "2s")
		responders = append(responders, addr)
	}
	status := func(body []byte) string {
		r, err := ocsp.ParseResponse(body, issuer)
		if err != nil {
			return "unparsable: " + err.Error()
		}
		return map[int]string{ocsp.Good: "good", ocsp.Revoked: "revoked"}[r.Status]
	}
	fetch := func(url string) ([]byte, http.Header) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", url, resp.StatusCode)
		}
		return b, resp.Header
	}
	// Alike: the same pre-signed answer from each.
	var first []byte
	waitFor(5*time.Second, func() bool {
		b, _ := fetch("http://" + responders[0] + path)
		first = b
		return status(b) == "good"
	})
	for _, r := range responders {
		if b, h := fetch("http://" + r + path); string(b) != string(first) || h.Get("Cache-Control") != "max-age=2, public, no-transform, must-revalidate" {
			t.Fatalf("responder %s answers otherwise (%s, Cache-Control %q)", r, status(b), h.Get("Cache-Control"))
		}
	}

	// nginx in front: round robin, GET answers cached as their headers say.
	port := freePort(t)
	var upstream strings.Builder
	for _, r := range responders {
		fmt.Fprintf(&upstream, "    server %s;\n", r)
	}
	conf := filepath.Join(dir, "nginx.conf")
	user := "" // as root, nginx's worker would drop to nobody, who cannot enter the test's directories
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	_ = os.WriteFile(conf, []byte(user+fmt.Sprintf(`daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
worker_processes 1;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  proxy_cache_path %[1]s/cache keys_zone=ocsp:1m;
  upstream responders {
%[2]s  }
  server {
    listen 127.0.0.1:%[3]d;
    location /ocsp {
      proxy_pass http://responders;
      proxy_cache ocsp;
      add_header X-Cache-Status $upstream_cache_status;
    }
  }
}
`, dir, upstream.String(), port)), 0o600)
	ngx := exec.Command("nginx", "-c", conf, "-p", dir)
	out := &lockedBuffer{}
	ngx.Stdout, ngx.Stderr = out, out
	ngx.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the master and its worker: end them together
	if err := ngx.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-ngx.Process.Pid, syscall.SIGKILL); _ = ngx.Wait() })
	front := "http://127.0.0.1:" + strconv.Itoa(port)
	if !waitFor(5*time.Second, func() bool {
		resp, err := http.Get(front + path)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}) {
		t.Fatalf("nginx did not start: %s", out.String())
	}
	if _, h := fetch(front + path); h.Get("X-Cache-Status") != "HIT" {
		t.Fatalf("the HTTP cache in front does not keep the answer: X-Cache-Status %q", h.Get("X-Cache-Status"))
	}

	// A revocation: every responder says so within a second; the cache in
	// front within its max-age.
	token := mustRun(t, "", "user", "token", "--data-dir", data, "--database-url", db, "--name", "admin").lastLine()
	root := filepath.Join(dir, "root.pem")
	_ = os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}), 0o600)
	if o, err := exec.Command("curl", "-sS", "--cacert", root, "-H", "Authorization: Bearer "+token, "-H", "Content-Type: application/json",
		"--data-binary", `{"reason":"keyCompromise"}`, "https://"+srv.httpsAddr+"/api/v1/certificates/"+serial+"/revoke").CombinedOutput(); err != nil || !strings.Contains(string(o), `"revoked"`) {
		t.Fatalf("revoke: %v %s", err, o)
	}
	start := time.Now()
	for _, r := range responders {
		if !waitFor(time.Second-time.Since(start), func() bool { b, _ := fetch("http://" + r + path); return status(b) == "revoked" }) {
			t.Fatalf("responder %s still not revoked %v after the revocation", r, time.Since(start))
		}
	}
	t.Logf("all 3 responders answered revoked %v after the revocation", time.Since(start))
	if !waitFor(3*time.Second, func() bool { b, _ := fetch(front + path); return status(b) == "revoked" }) {
		t.Fatal("the cache in front serves the old answer past --ocsp-http-max-age")
	}
	t.Logf("the HTTP cache in front answered revoked %v after the revocation", time.Since(start))
}
