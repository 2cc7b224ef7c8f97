package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/fleetpki/fleetpki/pki"
)

// fakeAccounts authenticates tokens named after roles; a fake is enough for
// this test of authorization logic, which never reaches a handler's work.
type fakeAccounts struct{}

func (fakeAccounts) AuthenticateToken(_ context.Context, secret string) (pki.User, error) {
	role, err := pki.ParseRole(strings.TrimPrefix(secret, "role-"))
	if err != nil {
		return pki.User{}, pki.Errorf(pki.Unauthenticated, "invalid API token")
	}
	return pki.User{Name: string(role), Role: role}, nil
}

// TestEveryAdminRouteIsAuthorized walks chi's route table, so that a route
// added without an entry in adminRoutes, or without its role check, fails.
func TestEveryAdminRouteIsAuthorized(t *testing.T) {
	a := &API{cfg: Config{Tokens: fakeAccounts{}}, log: discard(), err: errorWriter{discard()}}
	h := a.routes()
	known := map[string]pki.Role{}
	for _, rt := range adminRoutes {
		known[rt.method+" /api/v1"+rt.pattern] = rt.role
	}
	public := map[string]bool{"POST /api/v1/enroll": true, "POST /api/v1/renew": true, "GET /api/v1/openapi.yaml": true,
		"GET /.well-known/est/cacerts": true, "POST /.well-known/est/simpleenroll": true, "POST /.well-known/est/simplereenroll": true}
	walked := 0
	err := chi.Walk(h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		key := method + " " + route
		if public[key] {
			return nil
		}
		need, ok := known[key]
		if !ok {
			t.Errorf("route %s is not in adminRoutes: it has no declared role", key)
			return nil
		}
		walked++
		path := strings.NewReplacer("{id}", "dev-1", "{serial}", "abc").Replace(route)
		send := func(token string) int {
			req := httptest.NewRequest(method, path, strings.NewReader("{}"))
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if ct := rec.Header().Get("Content-Type"); rec.Code >= 400 && ct != "application/problem+json" {
				t.Errorf("%s: error answered as %q", key, ct)
			}
			return rec.Code
		}
		if got := send(""); got != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", key, got)
		}
		if got := send("not-a-token"); got != http.StatusUnauthorized {
			t.Errorf("%s with a bad token: %d, want 401", key, got)
		}
		for _, r := range []pki.Role{pki.RoleAuditor, pki.RoleOperator} {
			if !r.Allows(need) {
				if got := send("role-" + string(r)); got != http.StatusForbidden {
					t.Errorf("%s with a %s token: %d, want 403", key, r, got)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if walked != len(adminRoutes) {
		t.Fatalf("walked %d admin routes, the table has %d", walked, len(adminRoutes))
	}
}
