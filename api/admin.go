package api

import (
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/fleetpki/fleetpki/accounts"
	"github.com/fleetpki/fleetpki/api/wire"
	"github.com/fleetpki/fleetpki/pki"
)

func toDevice(d pki.Device) wire.Device {
	m := d.Metadata
	if m == nil {
		m = map[string]string{}
	}
	kind := d.Kind
	if kind == "" {
		kind = pki.KindDevice
	}
	return wire.Device{ID: d.ID, Kind: kind, Status: d.Status, Metadata: m, CreatedAt: rfc3339(d.CreatedAt), UpdatedAt: rfc3339(d.UpdatedAt)}
}

func toCert(c pki.CertRecord, now time.Time, withPEM bool) wire.CertRecord {
	j := wire.CertRecord{Serial: string(c.Serial), DeviceID: c.DeviceID, Profile: c.Profile, Status: c.StatusAt(now),
		NotBefore: rfc3339(c.NotBefore), NotAfter: rfc3339(c.NotAfter), FingerprintSHA256: c.FingerprintSHA256}
	if c.RevokedAt != nil {
		j.RevokedAt, j.RevocationReason = rfc3339(*c.RevokedAt), c.Reason.String()
	}
	if withPEM {
		j.Certificate = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))
	}
	return j
}

// limitParam reads ?limit= (1–500; absent means the default).
func limitParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > pki.MaxLimit {
		return 0, withCode("invalid_limit", pki.Errorf(pki.Invalid, "limit must be an integer from 1 to %d", pki.MaxLimit))
	}
	return n, nil
}

func (a *API) listDevices(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := limitParam(r)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	switch k := pki.DeviceKind(q.Get("kind")); k {
	case "", pki.KindDevice, pki.KindService:
	default:
		a.err.send(w, r, pki.Errorf(pki.Invalid, "kind must be device or service"))
		return
	}
	f := pki.DeviceFilter{Status: pki.DeviceStatus(q.Get("status")), Kind: pki.DeviceKind(q.Get("kind")), IDPrefix: q.Get("q"),
		Limit: n, Cursor: q.Get("cursor")}
	if meta := q.Get("metadata"); meta != "" {
		k, v, ok := strings.Cut(meta, "=")
		if !ok {
			a.err.send(w, r, withCode("invalid_filter", pki.Errorf(pki.Invalid, "metadata filter must be key=value")))
			return
		}
		f.MetaKey, f.MetaValue = k, v
	}
	p, err := a.cfg.Directory.Devices(r.Context(), f)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	out := wire.Page[wire.Device]{Items: make([]wire.Device, 0, len(p.Items)), NextCursor: p.Next}
	for _, d := range p.Items {
		out.Items = append(out.Items, toDevice(d))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getDevice(w http.ResponseWriter, r *http.Request) {
	d, err := a.cfg.Directory.Device(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toDevice(d))
}

func (a *API) listCertificates(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := limitParam(r)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	f := pki.CertFilter{DeviceID: q.Get("device_id"), Status: pki.CertStatus(q.Get("status")), Limit: n, Cursor: q.Get("cursor")}
	if v := q.Get("expiring_within"); v != "" {
		d, err := parseDays(v)
		if err != nil || d <= 0 || d > 10*365*24*time.Hour {
			a.err.send(w, r, pki.Errorf(pki.Invalid, "expiring_within must be a duration such as 30d or 72h"))
			return
		}
		f.Now = time.Now()
		f.ExpiringBefore = f.Now.Add(d)
	}
	p, err := a.cfg.Directory.Certificates(r.Context(), f)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	now := time.Now()
	out := wire.Page[wire.CertRecord]{Items: make([]wire.CertRecord, 0, len(p.Items)), NextCursor: p.Next}
	for _, c := range p.Items {
		out.Items = append(out.Items, toCert(c, now, false))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) serialParam(r *http.Request) (pki.Serial, error) {
	return pki.ParseSerial(chi.URLParam(r, "serial"))
}

func (a *API) getCertificate(w http.ResponseWriter, r *http.Request) {
	serial, err := a.serialParam(r)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	c, err := a.cfg.Directory.Certificate(r.Context(), serial)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toCert(c, time.Now(), true))
}

func (a *API) revokeReason(r *http.Request) (pki.RevocationReason, error) {
	var req wire.RevokeRequest
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return 0, err
		}
	}
	return pki.ParseRevocationReason(req.Reason)
}

func (a *API) revokeCertificate(w http.ResponseWriter, r *http.Request) {
	serial, err := a.serialParam(r)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	reason, err := a.revokeReason(r)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	rec, err := a.cfg.Revoker.Revoke(r.Context(), serial, reason, actor(r, "user:"+userOf(r).Name))
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toCert(rec, time.Now(), false))
}

func (a *API) revokeDevice(w http.ResponseWriter, r *http.Request) {
	reason, err := a.revokeReason(r)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	recs, err := a.cfg.Revoker.RevokeDevice(r.Context(), chi.URLParam(r, "id"), reason, actor(r, "user:"+userOf(r).Name))
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	out := wire.DeviceRevocation{DeviceID: chi.URLParam(r, "id"), Revoked: make([]wire.CertRecord, 0, len(recs))}
	for _, c := range recs {
		out.Revoked = append(out.Revoked, toCert(c, time.Now(), false))
	}
	writeJSON(w, http.StatusOK, out)
}

func toCredential(c pki.Credential) wire.Credential {
	j := wire.Credential{ID: c.ID, Name: c.Name, Profiles: c.Profiles, DevicePattern: c.DevicePattern, MaxUses: c.MaxUses,
		NoReenroll: c.NoReenroll, NamePattern: c.NamePattern, Uses: c.Uses, Disabled: c.Disabled, CreatedAt: rfc3339(c.CreatedAt)}
	if c.ExpiresAt != nil {
		j.ExpiresAt = rfc3339(*c.ExpiresAt)
	}
	return j
}

func (a *API) createCredential(w http.ResponseWriter, r *http.Request) {
	var req wire.CredentialRequest
	if err := decode(r, &req); err != nil {
		a.err.send(w, r, err)
		return
	}
	var ttl time.Duration
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			a.err.send(w, r, withCode("invalid_request", pki.Errorf(pki.Invalid, "expires_in must be a positive duration such as \"720h\"")))
			return
		}
		ttl = d
	}
	secret, c, err := a.cfg.Credentials.CreateCredential(r.Context(), accounts.CredentialSpec{Name: req.Name, Profiles: req.Profiles,
		DevicePattern: req.DevicePattern, NamePattern: req.NamePattern, TTL: ttl, MaxUses: req.MaxUses, NoReenroll: req.NoReenroll},
		actor(r, "user:"+userOf(r).Name))
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	j := toCredential(c)
	j.Secret = secret
	writeJSON(w, http.StatusCreated, j)
}

func (a *API) listCredentials(w http.ResponseWriter, r *http.Request) {
	cs, err := a.cfg.Credentials.ListCredentials(r.Context())
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	out := wire.Page[wire.Credential]{Items: make([]wire.Credential, 0, len(cs))}
	for _, c := range cs {
		out.Items = append(out.Items, toCredential(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) disableCredential(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Credentials.DisableCredential(r.Context(), chi.URLParam(r, "id"), actor(r, "user:"+userOf(r).Name)); err != nil {
		a.err.send(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listAudit pages through the audit log, oldest first; the cursor is the
// last sequence number seen, opaque to clients.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request) {
	n, err := limitParam(r)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	if n == 0 {
		n = pki.DefaultLimit
	}
	var after int64
	if c := r.URL.Query().Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err == nil {
			after, err = strconv.ParseInt(strings.TrimPrefix(string(b), "a:"), 10, 64)
		}
		if err != nil || after < 0 || !strings.HasPrefix(string(b), "a:") {
			a.err.send(w, r, withCode("invalid_cursor", pki.Errorf(pki.Invalid, "the cursor is not valid for this list")))
			return
		}
	}
	evs, err := a.cfg.Audit.List(r.Context(), after, n)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	out := wire.Page[wire.AuditEvent]{Items: make([]wire.AuditEvent, 0, len(evs))}
	for _, e := range evs {
		out.Items = append(out.Items, wire.AuditEvent{Seq: e.Seq, Time: e.Time.UTC().Format(time.RFC3339Nano), Actor: e.Actor.Name,
			CredentialID: e.Actor.CredentialID, RemoteAddr: e.Actor.RemoteAddr, RequestID: e.Actor.RequestID,
			Action: e.Action, Target: e.Target, Details: e.Details, Hash: base64.StdEncoding.EncodeToString(e.Hash)})
	}
	if len(evs) == n {
		out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte("a:" + strconv.FormatInt(evs[len(evs)-1].Seq, 10)))
	}
	writeJSON(w, http.StatusOK, out)
}

// parseDays reads "30d" or a Go duration ("72h").
func parseDays(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		return time.Duration(n) * 24 * time.Hour, err
	}
	return time.ParseDuration(s)
}
