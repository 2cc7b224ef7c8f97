package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"slices"
	"testing"

	"github.com/fleetpki/fleetpki/accounts"
	"github.com/fleetpki/fleetpki/pki"
)

type issuedJSON struct {
	DeviceID    string `json:"device_id"`
	Serial      string `json:"serial"`
	Certificate string `json:"certificate"`
}

func parseIssued(t *testing.T, body []byte) (issuedJSON, *x509.Certificate) {
	t.Helper()
	var out issuedJSON
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(out.Certificate))
	if blk == nil {
		t.Fatalf("no certificate in %s", body)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return out, c
}

// certCount is how many certificates the store holds, to show a refusal
// issued nothing.
func (e *env) certCount() int {
	e.t.Helper()
	page, err := e.st.ListCertificates(context.Background(), pki.CertFilter{Limit: pki.MaxLimit})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(page.Items)
}

// mtlsClient presents cert and key as the TLS client certificate.
func (e *env) mtlsClient(der []byte, k *ecdsa.PrivateKey) *http.Client {
	tr := e.srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, nil
	}
	return &http.Client{Transport: tr}
}

// Service certificates: a credential states the profiles and names it may
// request; a device credential gets none, a name outside the pattern is
// refused with nothing issued, and the certificates carry exactly the
// names asked for, for the purposes of their profile.
func TestServiceEnrollment(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	svc, _, err := e.creds.CreateCredential(ctx, accounts.CredentialSpec{Name: "brokers", Profiles: []string{"server", "broker"},
		NamePattern: `[a-z0-9-]+\.mqtt\.example|10\.0\.0\.[0-9]+`}, pki.Actor{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	enroll := func(cred string, req map[string]any) (int, []byte, http.Header) {
		_, csr := newKeyCSR(t)
		req["csr"] = csr
		return e.do(nil, "POST", "/api/v1/enroll", cred, jsonBody(t, req))
	}
	refusals := []struct {
		name   string
		cred   string
		req    map[string]any
		status int
	}{
		{"device credential asks for a server certificate", e.cred,
			map[string]any{"device_id": "sensor-1", "profile": "server", "dns_names": []string{"b1.mqtt.example"}}, 403},
		{"device credential asks for a broker certificate", e.cred,
			map[string]any{"device_id": "sensor-1", "profile": "broker", "dns_names": []string{"b1.mqtt.example"}}, 403},
		{"device credential adds names to a device certificate", e.cred,
			map[string]any{"device_id": "sensor-1", "dns_names": []string{"b1.mqtt.example"}}, 400},
		{"name outside the pattern", svc,
			map[string]any{"device_id": "b1", "profile": "server", "dns_names": []string{"b1.mqtt.example", "pki.example"}}, 403},
		{"suffix trick", svc,
			map[string]any{"device_id": "b1", "profile": "server", "dns_names": []string{"b1.mqtt.example.evil.example"}}, 403},
		{"IP outside the pattern", svc,
			map[string]any{"device_id": "b1", "profile": "server", "ip_addresses": []string{"10.0.1.5"}}, 403},
		{"wildcard", svc,
			map[string]any{"device_id": "b1", "profile": "server", "dns_names": []string{"*.mqtt.example"}}, 400},
		{"not an IP", svc,
			map[string]any{"device_id": "b1", "profile": "server", "ip_addresses": []string{"10.0.0.300"}}, 400},
		{"no names", svc, map[string]any{"device_id": "b1", "profile": "server"}, 400},
		{"too many names", svc, map[string]any{"device_id": "b1", "profile": "server", "dns_names": func() []string {
			var n []string
			for i := range pki.MaxServiceNames + 1 {
				n = append(n, string(rune('a'+i))+".mqtt.example")
			}
			return n
		}()}, 400},
		{"profile not allowed", svc, map[string]any{"device_id": "b1", "profile": "device"}, 403},
	}
	for _, tc := range refusals {
		status, body, hdr := enroll(tc.cred, tc.req)
		mustProblem(t, status, hdr, body, tc.status)
		if n := e.certCount(); n != 0 {
			t.Fatalf("%s: %d certificates issued", tc.name, n)
		}
	}

	status, body, _ := enroll(svc, map[string]any{"device_id": "b1.mqtt.example", "profile": "server",
		"dns_names": []string{"B1.mqtt.example."}, "ip_addresses": []string{"10.0.0.5"}})
	if status != 201 {
		t.Fatalf("server certificate: %d %s", status, body)
	}
	_, srv := parseIssued(t, body)
	if !slices.Equal(srv.DNSNames, []string{"b1.mqtt.example"}) || len(srv.IPAddresses) != 1 || srv.IPAddresses[0].String() != "10.0.0.5" ||
		!slices.Equal(srv.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || len(srv.URIs) != 0 ||
		srv.Subject.CommonName != "b1.mqtt.example" {
		t.Fatalf("server certificate: CN %q DNS %v IP %v EKU %v URIs %v", srv.Subject.CommonName, srv.DNSNames, srv.IPAddresses, srv.ExtKeyUsage, srv.URIs)
	}
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Hierarchy().Root())
	inter := x509.NewCertPool()
	inter.AddCert(e.ca.Hierarchy().Intermediate())
	for _, host := range []string{"b1.mqtt.example", "10.0.0.5"} {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}

	// A broker certificate is also a client certificate: it opens the
	// revocation event stream as role broker. Server and device
	// certificates do not.
	bk, csr := newKeyCSR(t)
	status, body, _ = e.do(nil, "POST", "/api/v1/enroll", svc, jsonBody(t, map[string]any{"device_id": "b2.mqtt.example", "profile": "broker",
		"dns_names": []string{"b2.mqtt.example"}, "csr": csr}))
	if status != 201 {
		t.Fatalf("broker certificate: %d %s", status, body)
	}
	brokerOut, broker := parseIssued(t, body)
	if !slices.Equal(broker.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Fatalf("broker EKU %v", broker.ExtKeyUsage)
	}
	events := func(c *http.Client) int {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/v1/revocations/events", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := events(e.mtlsClient(broker.Raw, bk)); got != 200 {
		t.Fatalf("event stream with the broker certificate: %d", got)
	}
	dk, dcsr := newKeyCSR(t)
	status, body, _ = e.do(nil, "POST", "/api/v1/enroll", e.cred, jsonBody(t, map[string]any{"device_id": "sensor-7", "csr": dcsr}))
	if status != 201 {
		t.Fatalf("device: %d %s", status, body)
	}
	_, dev := parseIssued(t, body)
	if got := events(e.mtlsClient(dev.Raw, dk)); got != 403 {
		t.Fatalf("event stream with a device certificate: %d, want 403", got)
	}

	// Renewal keeps the names.
	_, csr2 := newKeyCSR(t)
	status, body, _ = e.do(e.mtlsClient(broker.Raw, bk), "POST", "/api/v1/renew", "", jsonBody(t, map[string]string{"csr": csr2}))
	if status != 201 {
		t.Fatalf("broker renewal: %d %s", status, body)
	}
	if _, renewed := parseIssued(t, body); !slices.Equal(renewed.DNSNames, broker.DNSNames) || renewed.Subject.CommonName != broker.Subject.CommonName {
		t.Fatalf("renewed broker certificate names %v %q", renewed.DNSNames, renewed.Subject.CommonName)
	}

	// Services are listed apart from devices.
	list := func(q string) []string {
		status, body, _ := e.do(nil, "GET", "/api/v1/devices?"+q, e.tokens[pki.RoleAuditor], nil)
		if status != 200 {
			t.Fatalf("list %s: %d %s", q, status, body)
		}
		var page struct {
			Items []struct {
				ID   string `json:"id"`
				Kind string `json:"kind"`
			} `json:"items"`
		}
		_ = json.Unmarshal(body, &page)
		var ids []string
		for _, d := range page.Items {
			ids = append(ids, d.Kind+":"+d.ID)
		}
		slices.Sort(ids)
		return ids
	}
	if got := list("kind=service"); !slices.Equal(got, []string{"service:b1.mqtt.example", "service:b2.mqtt.example"}) {
		t.Errorf("services: %v", got)
	}
	if got := list("kind=device"); !slices.Equal(got, []string{"device:sensor-7"}) {
		t.Errorf("devices: %v", got)
	}
	status, body, hdr := e.do(nil, "GET", "/api/v1/devices?kind=gadget", e.tokens[pki.RoleAuditor], nil)
	mustProblem(t, status, hdr, body, 400)

	// A service cannot take a device's id.
	anyID, _, err := e.creds.CreateCredential(ctx, accounts.CredentialSpec{Name: "any-id", Profiles: []string{"server"},
		NamePattern: `.*`}, pki.Actor{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	before := e.certCount()
	status, body, hdr = enroll(anyID, map[string]any{"device_id": "sensor-7", "profile": "server", "dns_names": []string{"sensor-7.example"}})
	mustProblem(t, status, hdr, body, 409)
	if e.certCount() != before {
		t.Fatal("the refused service request issued a certificate")
	}

	// A revoked broker certificate no longer opens the stream.
	status, body, _ = e.do(nil, "POST", "/api/v1/certificates/"+brokerOut.Serial+"/revoke", e.tokens[pki.RoleOperator],
		jsonBody(t, map[string]string{"reason": "keyCompromise"}))
	if status != 200 {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if got := events(e.mtlsClient(broker.Raw, bk)); got != 401 {
		t.Fatalf("event stream with a revoked broker certificate: %d, want 401", got)
	}
}
