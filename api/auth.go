package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/fleetpki/fleetpki/pki"
)

type userKey struct{}

// bearer returns the token of an "Authorization: Bearer …" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// requireRole authenticates an admin API token and checks its user's role.
// It fails closed: no token, an unknown one, or any error is a refusal.
func (a *API) requireRole(need pki.Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, ok := bearer(r)
			if !ok && need == pki.RoleBroker && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && a.cfg.Clients != nil {
				// A broker may also authenticate with its own certificate
				// (profile broker, issued by this CA, not revoked).
				rec, err := a.cfg.Clients.VerifyClient(r.Context(), r.TLS.PeerCertificates[0])
				if err != nil {
					a.err.send(w, r, err)
					return
				}
				if rec.Profile != brokerProfile {
					a.err.send(w, r, withCode("role_insufficient", pki.Errorf(pki.Forbidden, "this needs a broker identity; the certificate's profile is %s", rec.Profile)))
					return
				}
				u := pki.User{Name: "broker:" + rec.DeviceID, Role: pki.RoleBroker}
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
				return
			}
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="fleetpki"`)
				a.err.send(w, r, withCode("token_required", pki.Errorf(pki.Unauthenticated, "an admin API token is required (Authorization: Bearer …)")))
				return
			}
			u, err := a.cfg.Tokens.AuthenticateToken(r.Context(), token)
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="fleetpki", error="invalid_token"`)
				a.err.send(w, r, err)
				return
			}
			if !u.Role.Allows(need) {
				a.err.send(w, r, withCode("role_insufficient", pki.Errorf(pki.Forbidden, "this needs the %s role; user %q is %s", need, u.Name, u.Role)))
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
		})
	}
}

// userOf returns the authenticated user of an admin request.
func userOf(r *http.Request) pki.User {
	u, _ := r.Context().Value(userKey{}).(pki.User)
	return u
}
