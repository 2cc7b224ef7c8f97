package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/fleetpki/fleetpki/accounts"
	"github.com/fleetpki/fleetpki/pki"
)

func (u *UI) credentials(w http.ResponseWriter, r *http.Request) {
	u.renderCredentials(w, r, http.StatusOK, nil)
}

func (u *UI) renderCredentials(w http.ResponseWriter, r *http.Request, status int, extra map[string]any) {
	creds, err := u.cfg.Credentials.ListCredentials(r.Context())
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	data := map[string]any{"Credentials": creds, "Now": u.cfg.Clock.Now()}
	for k, v := range extra {
		data[k] = v
	}
	u.render(w, r, status, "credentials", data)
}

func (u *UI) createCredential(w http.ResponseWriter, r *http.Request) {
	spec := accounts.CredentialSpec{Name: strings.TrimSpace(r.PostFormValue("name")), DevicePattern: strings.TrimSpace(r.PostFormValue("pattern")),
		NamePattern: strings.TrimSpace(r.PostFormValue("name_pattern")), NoReenroll: r.PostFormValue("noreenroll") == "on"}
	if p := strings.TrimSpace(r.PostFormValue("profiles")); p != "" {
		for _, s := range strings.Split(p, ",") {
			spec.Profiles = append(spec.Profiles, strings.TrimSpace(s))
		}
	}
	if d := strings.TrimSpace(r.PostFormValue("ttl_days")); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 3650 {
			u.renderCredentials(w, r, http.StatusBadRequest, map[string]any{"Error": "Expiry must be a number of days from 0 to 3650."})
			return
		}
		spec.TTL = time.Duration(n) * 24 * time.Hour
	}
	if m := strings.TrimSpace(r.PostFormValue("max_uses")); m != "" {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil || n < 0 {
			u.renderCredentials(w, r, http.StatusBadRequest, map[string]any{"Error": "Max uses must be a whole number (0 is unlimited)."})
			return
		}
		spec.MaxUses = n
	}
	secret, cred, err := u.cfg.Credentials.CreateCredential(r.Context(), spec, actor(r))
	if err != nil {
		if errors.Is(err, pki.Invalid) || errors.Is(err, pki.Conflict) {
			u.renderCredentials(w, r, http.StatusBadRequest, map[string]any{"Error": pki.Message(err)})
			return
		}
		u.serverError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	u.renderCredentials(w, r, http.StatusOK, map[string]any{"Secret": secret, "Created": cred})
}

func (u *UI) disableCredential(w http.ResponseWriter, r *http.Request) {
	if err := u.cfg.Credentials.DisableCredential(r.Context(), chi.URLParam(r, "id"), actor(r)); err != nil {
		u.domainError(w, r, err)
		return
	}
	http.Redirect(w, r, "/credentials", http.StatusSeeOther)
}
