package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// needTool fails (under CI) or skips (elsewhere) when a peer program is missing.
func needTool(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required (.ci/run installs it): %v", tool, err)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func pemFile(t testing.TB, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// enrollDevice enrolls id through the HTTPS API in Go and writes device.crt and device.key into dir.
func enrollDevice(t testing.TB, srv *server, rootDER []byte, secret, id, dir string) (serial string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	body, _ := json.Marshal(map[string]string{"device_id": id,
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	root, _ := x509.ParseCertificate(rootDER)
	pool := x509.NewCertPool()
	pool.AddCert(root)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("POST", "https://"+srv.httpsAddr+"/api/v1/enroll", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Serial, Certificate string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 201 {
		t.Fatalf("enroll %s: %d %v", id, resp.StatusCode, err)
	}
	_ = os.WriteFile(filepath.Join(dir, "device.crt"), []byte(out.Certificate), 0o600)
	kder, _ := x509.MarshalECPrivateKey(key)
	pemFile(t, filepath.Join(dir, "device.key"), "EC PRIVATE KEY", kder)
	return out.Serial
}

// TestMosquittoPicksUpRevocationWithoutRestart: Debian's Mosquitto checks
// client certificates against a crlfile that `fleetpki crl export --watch
// --exec` keeps current; after a revocation through the API, the device's
// next connection is refused, and Mosquitto never restarted.
func TestMosquittoPicksUpRevocationWithoutRestart(t *testing.T) {
	needTool(t, "mosquitto", "mosquitto_pub")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	srv := startServe(t, "--data-dir", data, "--http-addr", "127.0.0.1:0")
	secret := mustRun(t, "", "credential", "create", "--data-dir", data, "--name", "line").lastLine()
	token := mustRun(t, "", "user", "token", "--data-dir", data, "--name", "admin").lastLine()
	resp, err := http.Get(srv.url("/ca/root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	var rootDER bytes.Buffer
	_, _ = rootDER.ReadFrom(resp.Body)
	resp.Body.Close()
	serial := enrollDevice(t, srv, rootDER.Bytes(), secret, "sensor-1", dir)

	// The broker's own server certificate, from a throw-away CA of the test.
	bkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	btmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	bder, _ := x509.CreateCertificate(rand.Reader, btmpl, btmpl, bkey.Public(), bkey)
	bkeyDER, _ := x509.MarshalECPrivateKey(bkey)
	brokerCert := pemFile(t, filepath.Join(dir, "broker.crt"), "CERTIFICATE", bder)
	brokerKey := pemFile(t, filepath.Join(dir, "broker.key"), "EC PRIVATE KEY", bkeyDER)
	chainResp, err := http.Get(srv.url("/ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var chain bytes.Buffer
	_, _ = chain.ReadFrom(chainResp.Body)
	chainResp.Body.Close()
	_ = os.WriteFile(filepath.Join(dir, "fleet-ca.pem"), chain.Bytes(), 0o600)

	crlFile := filepath.Join(dir, "fleet.crl.pem")
	mustRun(t, "", "crl", "export", "--data-dir", data, "--out", crlFile)
	port := freePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	_ = os.WriteFile(conf, []byte(fmt.Sprintf(`user root
log_dest stderr
log_type error
log_type warning
log_type notice
per_listener_settings true
listener %d 127.0.0.1
allow_anonymous true
cafile %s
certfile %s
keyfile %s
require_certificate true
crlfile %s
set_tcp_nodelay true
`, port, filepath.Join(dir, "fleet-ca.pem"), brokerCert, brokerKey, crlFile)), 0o600)
	broker := exec.Command("mosquitto", "-c", conf)
	var blog bytes.Buffer
	broker.Stdout, broker.Stderr = &blog, &blog
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- broker.Wait() }()
	t.Cleanup(func() { _ = broker.Process.Kill(); <-exited })
	pid := broker.Process.Pid
	// Wait until Mosquitto listens (or fail with its log if it exits).
	for up := false; !up; {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("mosquitto exited: %v\n%s", err, blog.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
			up = true
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}

	watch := exec.Command(binaryPath, "crl", "export", "--data-dir", data, "--out", crlFile, "--watch", "--interval", "200ms",
		"--exec", "kill -HUP "+strconv.Itoa(pid))
	watch.Env = childEnv()
	var wlog bytes.Buffer
	watch.Stdout, watch.Stderr = &wlog, &wlog
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watch.Process.Kill(); _ = watch.Wait() })

	publish := func() error {
		cmd := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "--cafile", brokerCert,
			"--cert", filepath.Join(dir, "device.crt"), "--key", filepath.Join(dir, "device.key"),
			"-i", "sensor-1", "-t", "devices/sensor-1/telemetry", "-m", "hello", "-q", "1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for err := publish(); err != nil; err = publish() {
		if time.Now().After(deadline) {
			t.Fatalf("a valid device cannot publish: %v\nbroker log:\n%s", err, blog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	req, _ := http.NewRequest("POST", "https://"+srv.httpsAddr+"/api/v1/certificates/"+serial+"/revoke", strings.NewReader(`{"reason":"keyCompromise"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	root, _ := x509.ParseCertificate(rootDER.Bytes())
	pool := x509.NewCertPool()
	pool.AddCert(root)
	rresp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}).Do(req)
	if err != nil || rresp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", rresp, err)
	}
	rresp.Body.Close()
	start := time.Now()
	for publish() == nil {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the revoked device still publishes 10 s later\nexport log:\n%s\nbroker log:\n%s", wlog.String(), blog.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("Mosquitto refused the revoked device %v after the revocation", time.Since(start).Round(time.Millisecond))
	select {
	case err := <-exited:
		exited <- err
		t.Fatalf("Mosquitto exited (%v): it must keep running across the CRL reloads", err)
	default:
	}
	if broker.Process.Signal(syscallZero) != nil {
		t.Fatal("Mosquitto is not the same running process")
	}
}
