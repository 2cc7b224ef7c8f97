package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/fleetpki/fleetpki/accounts"
	"github.com/fleetpki/fleetpki/pki"
)

func (u *UI) users(w http.ResponseWriter, r *http.Request) {
	u.renderUsers(w, r, http.StatusOK, nil)
}

func (u *UI) renderUsers(w http.ResponseWriter, r *http.Request, status int, extra map[string]any) {
	us, err := u.cfg.Users.List(r.Context())
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	data := map[string]any{"Users": us, "Roles": []pki.Role{pki.RoleAuditor, pki.RoleOperator, pki.RoleAdmin, pki.RoleBroker}}
	for k, v := range extra {
		data[k] = v
	}
	u.render(w, r, status, "users", data)
}

func (u *UI) createUser(w http.ResponseWriter, r *http.Request) {
	role, err := pki.ParseRole(r.PostFormValue("role"))
	if err != nil {
		u.renderUsers(w, r, http.StatusBadRequest, map[string]any{"Error": "Choose a role from the list."})
		return
	}
	password := accounts.RandomPassword()
	created, err := u.cfg.Users.CreateUser(r.Context(), strings.TrimSpace(r.PostFormValue("name")), role, password, actor(r))
	if err != nil {
		if errors.Is(err, pki.Invalid) || errors.Is(err, pki.Conflict) {
			u.renderUsers(w, r, http.StatusBadRequest, map[string]any{"Error": pki.Message(err)})
			return
		}
		u.serverError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	u.renderUsers(w, r, http.StatusOK, map[string]any{"Created": created, "Password": password})
}

func (u *UI) disableUser(w http.ResponseWriter, r *http.Request) { u.setUserDisabled(w, r, true) }

func (u *UI) enableUser(w http.ResponseWriter, r *http.Request) { u.setUserDisabled(w, r, false) }

func (u *UI) setUserDisabled(w http.ResponseWriter, r *http.Request, disabled bool) {
	name := chi.URLParam(r, "name")
	if disabled && name == currentUser(r).Name {
		u.renderUsers(w, r, http.StatusBadRequest, map[string]any{"Error": "You cannot disable yourself; ask another admin."})
		return
	}
	if err := u.cfg.Users.SetUserDisabled(r.Context(), name, disabled, actor(r)); err != nil {
		u.domainError(w, r, err)
		return
	}
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}
