package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/fleetpki/fleetpki/pki"
)

// Bulk revocation through the API: the preview names the set and its hash;
// the revocation with that hash revokes exactly it (one audit event per
// certificate); a revocation with a stale hash is a 409 and revokes
// nothing; an auditor may not; the job is readable.
func TestBulkRevocation(t *testing.T) {
	e := newEnv(t)
	enroll := func(id, lot string) {
		_, csr := newKeyCSR(t)
		status, body, _ := e.do(nil, "POST", "/api/v1/enroll", e.cred, jsonBody(t, map[string]any{
			"device_id": id, "csr": csr, "metadata": map[string]string{"lot": lot}}))
		if status != http.StatusCreated {
			t.Fatalf("enroll %s: %d %s", id, status, body)
		}
	}
	for i := range 5 {
		enroll(fmt.Sprintf("sensor-%d", i), "W41")
	}
	enroll("sensor-9", "W42")
	sel := map[string]string{"key": "lot", "value": "W41"}
	status, body, _ := e.do(nil, "POST", "/api/v1/revocations:bulk-preview", e.tokens[pki.RoleOperator], jsonBody(t, map[string]any{"selector": sel}))
	var preview struct {
		Devices, Certificates int
		SetHash               string `json:"set_hash"`
		Sample                []string
	}
	if status != 200 || json.Unmarshal(body, &preview) != nil || preview.Devices != 5 || preview.Certificates != 5 || preview.SetHash == "" {
		t.Fatalf("preview: %d %s", status, body)
	}
	status, body, hdr := e.do(nil, "POST", "/api/v1/revocations:bulk", e.tokens[pki.RoleAuditor], jsonBody(t, map[string]any{
		"selector": sel, "set_hash": preview.SetHash, "reason": "keyCompromise"}))
	mustProblem(t, status, hdr, body, http.StatusForbidden)

	// The set changes after the preview: 409, nothing revoked.
	enroll("sensor-7", "W41")
	status, body, hdr = e.do(nil, "POST", "/api/v1/revocations:bulk", e.tokens[pki.RoleOperator], jsonBody(t, map[string]any{
		"selector": sel, "set_hash": preview.SetHash, "reason": "keyCompromise"}))
	if p := mustProblem(t, status, hdr, body, http.StatusConflict); !strings.Contains(p.Detail, "changed since the preview") {
		t.Fatalf("stale hash: %s", body)
	}
	status, body, _ = e.do(nil, "GET", "/api/v1/devices?status=revoked", e.tokens[pki.RoleAuditor], nil)
	if status != 200 || strings.Contains(string(body), "sensor-") {
		t.Fatalf("a refused bulk revocation revoked something: %s", body)
	}

	status, body, _ = e.do(nil, "POST", "/api/v1/revocations:bulk-preview", e.tokens[pki.RoleOperator], jsonBody(t, map[string]any{"selector": sel}))
	if status != 200 || json.Unmarshal(body, &preview) != nil || preview.Devices != 6 {
		t.Fatalf("second preview: %d %s", status, body)
	}
	status, body, hdr = e.do(nil, "POST", "/api/v1/revocations:bulk", e.tokens[pki.RoleOperator], jsonBody(t, map[string]any{
		"selector": sel, "set_hash": preview.SetHash, "reason": "keyCompromise"}))
	var job struct {
		ID      string
		Revoked int64
		Done    bool
	}
	if status != 200 || json.Unmarshal(body, &job) != nil || !job.Done || job.Revoked != 6 {
		t.Fatalf("bulk revocation: %d %s", status, body)
	}
	status, body, _ = e.do(nil, "GET", "/api/v1/devices?status=revoked&limit=50", e.tokens[pki.RoleAuditor], nil)
	if status != 200 || strings.Count(string(body), `"id": "sensor-`) != 6 || strings.Contains(string(body), "sensor-9") {
		t.Fatalf("revoked devices after the bulk revocation: %s", body)
	}
	status, body, _ = e.do(nil, "GET", "/api/v1/audit?limit=500", e.tokens[pki.RoleAuditor], nil)
	if n := strings.Count(string(body), `"action": "certificate.revoke"`); status != 200 || n != 6 {
		t.Fatalf("%d certificate.revoke audit events, want 6", n)
	}
	if status, body, _ := e.do(nil, "GET", hdr.Get("Location"), e.tokens[pki.RoleOperator], nil); status != 200 || !strings.Contains(string(body), `"done": true`) {
		t.Fatalf("job: %d %s", status, body)
	}
	status, body, hdr = e.do(nil, "POST", "/api/v1/revocations:bulk-preview", e.tokens[pki.RoleOperator], jsonBody(t, map[string]any{"selector": map[string]string{"key": "", "value": ""}}))
	mustProblem(t, status, hdr, body, http.StatusBadRequest)
}
