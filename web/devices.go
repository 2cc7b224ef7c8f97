package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/fleetpki/fleetpki/pki"
)

// parseMeta reads "key=value".
func parseMeta(s string) (key, value string, ok bool) {
	k, v, found := strings.Cut(strings.TrimSpace(s), "=")
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	return k, v, found && k != "" && v != ""
}

func (u *UI) devices(w http.ResponseWriter, r *http.Request) { u.identities(w, r, pki.KindDevice) }

// services lists the brokers and servers that hold server certificates,
// apart from the devices.
func (u *UI) services(w http.ResponseWriter, r *http.Request) { u.identities(w, r, pki.KindService) }

func (u *UI) identities(w http.ResponseWriter, r *http.Request, kind pki.DeviceKind) {
	q := r.URL.Query()
	f := pki.DeviceFilter{Kind: kind, IDPrefix: strings.TrimSpace(q.Get("q")), Cursor: q.Get("cursor"), Limit: 50}
	switch s := q.Get("status"); s {
	case "", "all":
	case string(pki.DeviceActive), string(pki.DeviceRevoked):
		f.Status = pki.DeviceStatus(s)
	default:
		u.fail(w, r, http.StatusBadRequest, "Unknown status filter.")
		return
	}
	if m := q.Get("meta"); m != "" {
		k, v, ok := parseMeta(m)
		if !ok {
			u.fail(w, r, http.StatusBadRequest, "Metadata search takes the form key=value, e.g. lot=2026-W41.")
			return
		}
		f.MetaKey, f.MetaValue = k, v
	}
	page, err := u.cfg.Directory.Devices(r.Context(), f)
	if err != nil {
		u.domainError(w, r, err)
		return
	}
	next := ""
	if page.Next != "" {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set("cursor", page.Next)
		next = r.URL.Path + "?" + v.Encode()
	}
	u.render(w, r, http.StatusOK, "devices", map[string]any{"Devices": page.Items, "Next": next, "Services": kind == pki.KindService,
		"Q": q.Get("q"), "Meta": q.Get("meta"), "Status": q.Get("status")})
}

func (u *UI) device(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	d, err := u.cfg.Directory.Device(r.Context(), id)
	if err != nil {
		u.domainError(w, r, err)
		return
	}
	certs, err := u.cfg.Directory.Certificates(r.Context(), pki.CertFilter{DeviceID: id, Limit: pki.MaxLimit})
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	targets := []string{id}
	for _, c := range certs.Items {
		targets = append(targets, string(c.Serial))
	}
	history, err := u.cfg.Audit.Recent(r.Context(), targets, auditPageSize)
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	keys := make([]string, 0, len(d.Metadata))
	for k := range d.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	u.render(w, r, http.StatusOK, "device", map[string]any{"Device": d, "Certs": certs.Items, "MetaKeys": keys,
		"History": history, "Now": u.cfg.Clock.Now(), "Services": d.Kind == pki.KindService})
}

// reasons offered in revoke forms, most useful first.
var reasons = []pki.RevocationReason{pki.ReasonKeyCompromise, pki.ReasonCessationOfOperation, pki.ReasonSuperseded,
	pki.ReasonAffiliationChanged, pki.ReasonUnspecified}

func (u *UI) revokeDeviceForm(w http.ResponseWriter, r *http.Request) {
	d, err := u.cfg.Directory.Device(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		u.domainError(w, r, err)
		return
	}
	certs, err := u.cfg.Directory.Certificates(r.Context(), pki.CertFilter{DeviceID: d.ID, Status: pki.CertValid, Limit: pki.MaxLimit})
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "revoke", map[string]any{"Kind": "device", "Device": d, "Certs": certs.Items,
		"Action": "/devices/" + url.PathEscape(d.ID) + "/revoke", "Confirm": d.ID, "Reasons": reasons})
}

// formReason reads and checks the reason field.
func (u *UI) formReason(w http.ResponseWriter, r *http.Request) (pki.RevocationReason, bool) {
	reason, err := pki.ParseRevocationReason(r.PostFormValue("reason"))
	if err != nil || !slices.Contains(reasons, reason) {
		u.fail(w, r, http.StatusBadRequest, "Choose a revocation reason from the list.")
		return 0, false
	}
	return reason, true
}

func (u *UI) revokeDevice(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	reason, ok := u.formReason(w, r)
	if !ok {
		return
	}
	if r.PostFormValue("confirm") != id {
		u.fail(w, r, http.StatusBadRequest, "Type the device id exactly to confirm; nothing was revoked.")
		return
	}
	recs, err := u.cfg.Revoker.RevokeDevice(r.Context(), id, reason, actor(r))
	if err != nil {
		u.domainError(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "revoked", map[string]any{"What": "device " + id, "Certs": recs, "Reason": reason, "DeviceID": id})
}

// expiring lists the certificates that expire within ?days (default 30)
// of devices not renewed beyond: the devices to renew.
func (u *UI) expiring(w http.ResponseWriter, r *http.Request) {
	days := 30
	if v := r.URL.Query().Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3650 {
			u.fail(w, r, http.StatusBadRequest, "Days must be a whole number from 1 to 3650.")
			return
		}
		days = n
	}
	now := u.cfg.Clock.Now()
	page, err := u.cfg.Directory.Certificates(r.Context(), pki.CertFilter{Now: now, ExpiringBefore: now.Add(time.Duration(days) * 24 * time.Hour),
		Limit: pki.MaxLimit, Cursor: r.URL.Query().Get("cursor")})
	if err != nil {
		u.domainError(w, r, err)
		return
	}
	next := ""
	if page.Next != "" {
		next = "/expiring?days=" + strconv.Itoa(days) + "&cursor=" + url.QueryEscape(page.Next)
	}
	u.render(w, r, http.StatusOK, "expiring", map[string]any{"Certs": page.Items, "Days": days, "Next": next, "Now": now})
}
