package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestESTWithCurlAndOpenSSL: EST (RFC 7030) with tools nobody on the team
// wrote. curl fetches /cacerts and enrolls an openssl-made CSR with the
// credential as the Basic password; openssl reads the PKCS#7 answers and
// verifies the certificate; re-enrollment works over mutual TLS with it.
func TestESTWithCurlAndOpenSSL(t *testing.T) {
	needTool(t, "openssl", "curl", "base64")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	srv := startServe(t, "--data-dir", data, "--http-addr", "127.0.0.1:0")
	secret := mustRun(t, "", "credential", "create", "--data-dir", data, "--name", "est-line", "--device-pattern", `sensor-[0-9]+`).lastLine()
	file := func(n string) string { return filepath.Join(dir, n) }
	sh := func(script string) (string, error) {
		out, err := exec.Command("bash", "-o", "pipefail", "-c", script).CombinedOutput()
		return string(out), err
	}
	must := func(script string) string {
		t.Helper()
		out, err := sh(script)
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
		return out
	}
	base := "https://" + srv.httpsAddr + "/.well-known/est"
	must("curl -sSf " + srv.url("/ca/root.crt") + " | openssl x509 -inform DER -out " + file("root.pem"))

	// /cacerts: the issuing CA and the root, as a certs-only PKCS#7.
	certs := must("curl -sSf --cacert " + file("root.pem") + " " + base + "/cacerts | base64 -d | openssl pkcs7 -inform DER -print_certs -out " + file("chain.pem") + " && cat " + file("chain.pem"))
	if strings.Count(certs, "BEGIN CERTIFICATE") != 2 || !strings.Contains(certs, "fleetpki Issuing CA") {
		t.Fatalf("cacerts:\n%s", certs)
	}

	// simpleenroll: the device id is the CSR's CN.
	must("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + file("device.key") +
		" -subj /CN=sensor-77 -outform DER -out " + file("csr.der") + " && base64 " + file("csr.der") + " > " + file("csr.b64"))
	enroll := func(cred, csr string) (string, error) {
		return sh("curl -sS --fail-with-body --cacert " + file("root.pem") + " -u 'station:" + cred + "' -H 'Content-Type: application/pkcs10' --data-binary @" +
			csr + " " + base + "/simpleenroll")
	}
	out, err := enroll(secret, file("csr.b64"))
	if err != nil {
		t.Fatalf("simpleenroll: %v\n%s", err, out)
	}
	_ = os.WriteFile(file("enrolled.b64"), []byte(out), 0o600)
	must("base64 -d " + file("enrolled.b64") + " | openssl pkcs7 -inform DER -print_certs -out " + file("device.crt"))
	if v := must("openssl verify -CAfile " + file("root.pem") + " -untrusted " + file("chain.pem") + " -purpose sslclient " + file("device.crt")); !strings.Contains(v, ": OK") {
		t.Fatalf("openssl verify: %s", v)
	}
	if s := must("openssl x509 -in " + file("device.crt") + " -noout -subject -ext subjectAltName"); !strings.Contains(s, "sensor-77") || !strings.Contains(s, "urn:fleetpki:device:sensor-77") {
		t.Fatalf("enrolled certificate: %s", s)
	}

	// Refusals: no credential, a wrong one, a CN outside the pattern, garbage.
	if out, err := sh("curl -sS --fail-with-body --cacert " + file("root.pem") + " -H 'Content-Type: application/pkcs10' --data-binary @" + file("csr.b64") + " " + base + "/simpleenroll"); err == nil || !strings.Contains(out, "credential_required") {
		t.Fatalf("without a credential: %v %s", err, out)
	}
	if out, err := enroll("fpe_wrong", file("csr.b64")); err == nil || !strings.Contains(out, `"status":401`) {
		t.Fatalf("wrong credential: %v %s", err, out)
	}
	must("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -subj /CN=camera-1 -outform DER 2>/dev/null | base64 > " + file("other.b64"))
	if out, err := enroll(secret, file("other.b64")); err == nil || !strings.Contains(out, `"status":403`) {
		t.Fatalf("CN outside the pattern: %v %s", err, out)
	}
	_ = os.WriteFile(file("garbage.b64"), []byte("bm90IGEgQ1NS\n"), 0o600)
	if out, err := enroll(secret, file("garbage.b64")); err == nil || !strings.Contains(out, `"status":400`) {
		t.Fatalf("garbage CSR: %v %s", err, out)
	}

	// simplereenroll over mutual TLS with the certificate just issued.
	must("openssl req -new -key " + file("device.key") + " -subj /CN=sensor-77 -outform DER | base64 > " + file("re.b64"))
	out = must("curl -sS --fail-with-body --cacert " + file("root.pem") + " --cert " + file("device.crt") + " --key " + file("device.key") +
		" -H 'Content-Type: application/pkcs10' --data-binary @" + file("re.b64") + " " + base + "/simplereenroll | base64 -d | openssl pkcs7 -inform DER -print_certs | openssl x509 -noout -subject -serial")
	first := must("openssl x509 -in " + file("device.crt") + " -noout -serial")
	if !strings.Contains(out, "sensor-77") || strings.Contains(out, strings.TrimSpace(first)) {
		t.Fatalf("re-enrolled: %s (first %s)", out, first)
	}
}
