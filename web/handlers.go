package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/pki"
)

// validCSRF compares the form's token with the session's in constant time.
func validCSRF(r *http.Request, want string) bool {
	got := r.PostFormValue("csrf")
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// safeNext keeps a post-login redirect on this site, query-escaped for a URL.
func safeNext(p string) string { return url.QueryEscape(nextPath(p)) }

// nextPath returns p if it is a path on this site, else "/". Browsers drop
// tabs and newlines and read "\" as "/", so "/\tevil.example" or
// "/\\evil.example" would leave the site: anything but a plain
// absolute path is refused.
func nextPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || len(p) > 2048 {
		return "/"
	}
	for _, c := range p {
		if c <= ' ' || c == 0x7f || c == '\\' || c >= 0x80 {
			return "/"
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" {
		return "/"
	}
	return p
}

func (u *UI) loginForm(w http.ResponseWriter, r *http.Request) {
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	u.render(w, r, http.StatusOK, "login", map[string]any{"Token": tok, "Next": nextPath(r.URL.Query().Get("next"))})
}

// login checks the password under the throttle. The login form carries a
// token that must match its cookie (double submit), so another site cannot
// sign a browser in to an account of its choosing.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	name, password := strings.TrimSpace(r.PostFormValue("username")), r.PostFormValue("password")
	c, _ := r.Cookie(loginCookie)
	if c == nil || c.Value == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("token"))) != 1 {
		u.fail(w, r, http.StatusForbidden, "The sign-in form expired. Reload the page and try again.")
		return
	}
	user, err := u.checkPassword(w, r, name, password, func(status int, msg string) { u.renderLogin(w, r, status, name, msg) })
	if err != nil {
		return
	}
	if user.Role == pki.RoleBroker {
		u.renderLogin(w, r, http.StatusForbidden, name, "This is a broker's machine identity: it has API tokens, not a web sign-in.")
		return
	}
	id, _, err := u.cfg.Sessions.Create(r.Context(), user, pki.Actor{RemoteAddr: r.RemoteAddr})
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, nextPath(r.PostFormValue("next")), http.StatusSeeOther)
}

// checkPassword checks a password under the throttle: the attempt is
// counted before the password is hashed, so concurrent guesses cannot
// pass the limit. On any failure it has answered through refuse (429 or
// 503 with Retry-After, 401) or as a server error, and returns an error.
func (u *UI) checkPassword(w http.ResponseWriter, r *http.Request, name, password string, refuse func(status int, msg string)) (pki.User, error) {
	ip := remoteIP(r)
	att, wait := u.throttle.begin(name, ip)
	if att == nil {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		refuse(http.StatusTooManyRequests, fmt.Sprintf("Too many failed sign-ins. Try again in %s.", wait.Round(time.Second)))
		return pki.User{}, errThrottled
	}
	user, err := u.cfg.Accounts.CheckPassword(r.Context(), name, password)
	switch {
	case err == nil:
		att.done(true)
		return user, nil
	case errors.Is(err, pki.Unauthenticated):
		n := att.done(false)
		level := slog.LevelInfo
		if n >= userAlarm {
			level = slog.LevelWarn // many failures for one name, from any addresses
		}
		u.log.Log(r.Context(), level, "password check failed", "user", name, "remote", r.RemoteAddr, "user_failures_in_window", n)
		refuse(http.StatusUnauthorized, "Wrong user name or password.")
	case errors.Is(err, pki.Unavailable):
		att.done(true) // not the caller's failure: nothing was checked
		w.Header().Set("Retry-After", "2")
		refuse(http.StatusServiceUnavailable, "Too many sign-ins at once. Try again in a moment.")
	default:
		att.done(true)
		u.serverError(w, r, err)
	}
	return pki.User{}, err
}

var errThrottled = errors.New("throttled")

func (u *UI) renderLogin(w http.ResponseWriter, r *http.Request, status int, name, msg string) {
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	u.render(w, r, status, "login", map[string]any{"Token": tok, "Error": msg, "Username": name, "Next": nextPath(r.PostFormValue("next"))})
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	c, _ := r.Cookie(sessionCookie)
	if c != nil {
		if err := u.cfg.Sessions.Delete(r.Context(), c.Value, actor(r)); err != nil {
			u.serverError(w, r, err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// chartDays is how many days the dashboard's chart shows.
const chartDays = 14

func (u *UI) dashboard(w http.ResponseWriter, r *http.Request) {
	st, err := u.cfg.Directory.Stats(r.Context(), chartDays)
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	data := map[string]any{"Stats": st, "Chart": newChart(st.PerDay)}
	if u.cfg.Health != nil {
		h, err := u.cfg.Health(r.Context())
		if err != nil {
			data["HealthError"] = err.Error()
		} else {
			now := u.cfg.Clock.Now()
			data["Health"] = h
			data["CRLAge"] = human(now.Sub(h.CRLThisUpdate))
			data["SignerLeft"] = human(h.OCSPSignerEnd.Sub(now))
		}
	}
	u.render(w, r, http.StatusOK, "dashboard", data)
}

// parseMeta reads "key=value".
func parseMeta(s string) (key, value string, ok bool) {
	k, v, found := strings.Cut(strings.TrimSpace(s), "=")
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	return k, v, found && k != "" && v != ""
}

func (u *UI) devices(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := pki.DeviceFilter{IDPrefix: strings.TrimSpace(q.Get("q")), Cursor: q.Get("cursor"), Limit: 50}
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
		next = "/devices?" + v.Encode()
	}
	u.render(w, r, http.StatusOK, "devices", map[string]any{"Devices": page.Items, "Next": next,
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
	history, err := u.cfg.Directory.RecentAudit(r.Context(), targets, auditPageSize)
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
		"History": history, "Now": u.cfg.Clock.Now()})
}

// auditPageSize is how many of the newest audit events a page shows.
const auditPageSize = 200

func (u *UI) certFromURL(w http.ResponseWriter, r *http.Request) (pki.CertRecord, *x509.Certificate, bool) {
	serial, err := pki.ParseSerial(chi.URLParam(r, "serial"))
	if err != nil {
		u.fail(w, r, http.StatusBadRequest, "That is not a certificate serial number.")
		return pki.CertRecord{}, nil, false
	}
	rec, err := u.cfg.Directory.Certificate(r.Context(), serial)
	if err != nil {
		u.domainError(w, r, err)
		return pki.CertRecord{}, nil, false
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		u.serverError(w, r, err)
		return pki.CertRecord{}, nil, false
	}
	return rec, cert, true
}

func (u *UI) certificate(w http.ResponseWriter, r *http.Request) {
	rec, cert, ok := u.certFromURL(w, r)
	if !ok {
		return
	}
	data := map[string]any{"Rec": rec, "Cert": cert, "Now": u.cfg.Clock.Now(), "Status": rec.StatusAt(u.cfg.Clock.Now()),
		"KeyAlg": keyAlgorithm(cert), "EKU": ekuNames(cert)}
	if u.cfg.OCSP != nil {
		a, err := u.cfg.OCSP(r.Context(), cert)
		if err != nil {
			data["OCSPError"] = err.Error()
		} else {
			data["OCSP"] = a
		}
	}
	u.render(w, r, http.StatusOK, "certificate", data)
}

func (u *UI) certificatePEM(w http.ResponseWriter, r *http.Request) {
	rec, _, ok := u.certFromURL(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="`+string(rec.Serial)+`.pem"`)
	_ = pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: rec.DER})
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

func (u *UI) revokeCertForm(w http.ResponseWriter, r *http.Request) {
	rec, _, ok := u.certFromURL(w, r)
	if !ok {
		return
	}
	u.render(w, r, http.StatusOK, "revoke", map[string]any{"Kind": "certificate", "Rec": rec, "Certs": []pki.CertRecord{rec},
		"Action": "/certificates/" + string(rec.Serial) + "/revoke", "Confirm": rec.DeviceID, "Reasons": reasons})
}

func (u *UI) revokeCert(w http.ResponseWriter, r *http.Request) {
	rec, _, ok := u.certFromURL(w, r)
	if !ok {
		return
	}
	reason, ok := u.formReason(w, r)
	if !ok {
		return
	}
	if r.PostFormValue("confirm") != rec.DeviceID {
		u.fail(w, r, http.StatusBadRequest, "Type the device id exactly to confirm; nothing was revoked.")
		return
	}
	out, err := u.cfg.Revoker.Revoke(r.Context(), rec.Serial, reason, actor(r))
	if err != nil {
		u.domainError(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "revoked", map[string]any{"What": "certificate " + string(rec.Serial), "Certs": []pki.CertRecord{out},
		"Reason": reason, "DeviceID": rec.DeviceID})
}

// bulkLimit bounds one bulk revocation: a lot is hundreds or thousands of
// devices; anything larger is a job for the API and a script.
const bulkLimit = 10000

// bulkTarget is one device a bulk revocation will hit.
type bulkTarget struct {
	Device pki.Device
	Certs  int
}

// bulkSet finds the active devices with key=value and their valid
// certificates, and a hash of the set so that the revocation hits exactly
// what was previewed.
func (u *UI) bulkSet(r *http.Request, key, value string) ([]bulkTarget, int, string, error) {
	var out []bulkTarget
	total := 0
	h := sha256.New()
	for cursor := ""; ; {
		page, err := u.cfg.Directory.Devices(r.Context(), pki.DeviceFilter{MetaKey: key, MetaValue: value, Status: pki.DeviceActive,
			Limit: pki.MaxLimit, Cursor: cursor})
		if err != nil {
			return nil, 0, "", err
		}
		for _, d := range page.Items {
			certs, err := u.cfg.Directory.Certificates(r.Context(), pki.CertFilter{DeviceID: d.ID, Status: pki.CertValid, Limit: pki.MaxLimit})
			if err != nil {
				return nil, 0, "", err
			}
			out = append(out, bulkTarget{Device: d, Certs: len(certs.Items)})
			total += len(certs.Items)
			for _, c := range certs.Items {
				fmt.Fprintf(h, "%s %s\n", d.ID, c.Serial)
			}
			if len(out) > bulkLimit {
				return nil, 0, "", pki.Errorf(pki.Invalid, "more than %d devices match; narrow the selection or use the API", bulkLimit)
			}
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	return out, total, hex.EncodeToString(h.Sum(nil)), nil
}

func (u *UI) bulkForm(w http.ResponseWriter, r *http.Request) {
	meta := r.URL.Query().Get("meta")
	data := map[string]any{"Meta": meta, "Reasons": reasons}
	if meta != "" {
		k, v, ok := parseMeta(meta)
		if !ok {
			u.fail(w, r, http.StatusBadRequest, "Select devices by metadata as key=value, e.g. lot=2026-W41.")
			return
		}
		targets, total, hash, err := u.bulkSet(r, k, v)
		if err != nil {
			u.domainError(w, r, err)
			return
		}
		data["Targets"], data["Total"], data["Hash"], data["Count"] = targets, total, hash, len(targets)
	}
	u.render(w, r, http.StatusOK, "bulk", data)
}

func (u *UI) bulkRevoke(w http.ResponseWriter, r *http.Request) {
	meta := r.PostFormValue("meta")
	k, v, ok := parseMeta(meta)
	if !ok {
		u.fail(w, r, http.StatusBadRequest, "Select devices by metadata as key=value.")
		return
	}
	reason, ok := u.formReason(w, r)
	if !ok {
		return
	}
	targets, _, hash, err := u.bulkSet(r, k, v)
	if err != nil {
		u.domainError(w, r, err)
		return
	}
	if r.PostFormValue("hash") != hash {
		u.fail(w, r, http.StatusConflict, "The devices matching "+meta+" changed since the preview; nothing was revoked. Preview again.")
		return
	}
	if r.PostFormValue("confirm") != strconv.Itoa(len(targets)) {
		u.fail(w, r, http.StatusBadRequest, "Type the number of devices exactly to confirm; nothing was revoked.")
		return
	}
	var revoked []pki.CertRecord
	for _, t := range targets {
		recs, err := u.cfg.Revoker.RevokeDevice(r.Context(), t.Device.ID, reason, actor(r))
		if err != nil {
			u.domainError(w, r, fmt.Errorf("after %d certificates: %w", len(revoked), err))
			return
		}
		revoked = append(revoked, recs...)
	}
	u.render(w, r, http.StatusOK, "revoked", map[string]any{"What": fmt.Sprintf("%d devices with %s", len(targets), meta),
		"Certs": revoked, "Reason": reason})
}

func (u *UI) credentials(w http.ResponseWriter, r *http.Request) {
	u.renderCredentials(w, r, http.StatusOK, nil)
}

func (u *UI) renderCredentials(w http.ResponseWriter, r *http.Request, status int, extra map[string]any) {
	creds, err := u.cfg.Accounts.ListCredentials(r.Context())
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
	spec := ca.CredentialSpec{Name: strings.TrimSpace(r.PostFormValue("name")), DevicePattern: strings.TrimSpace(r.PostFormValue("pattern")),
		NoReenroll: r.PostFormValue("noreenroll") == "on"}
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
	secret, cred, err := u.cfg.Accounts.CreateCredential(r.Context(), spec, actor(r))
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
	if err := u.cfg.Accounts.DisableCredential(r.Context(), chi.URLParam(r, "id"), actor(r)); err != nil {
		u.domainError(w, r, err)
		return
	}
	http.Redirect(w, r, "/credentials", http.StatusSeeOther)
}

func (u *UI) users(w http.ResponseWriter, r *http.Request) {
	u.renderUsers(w, r, http.StatusOK, nil)
}

func (u *UI) renderUsers(w http.ResponseWriter, r *http.Request, status int, extra map[string]any) {
	us, err := u.cfg.Directory.Users(r.Context())
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
	password := ca.RandomPassword()
	created, err := u.cfg.Accounts.CreateUser(r.Context(), strings.TrimSpace(r.PostFormValue("name")), role, password, actor(r))
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

func (u *UI) audit(w http.ResponseWriter, r *http.Request) {
	check, verr := u.cfg.Accounts.VerifyAuditRecent(r.Context())
	events, err := u.cfg.Directory.RecentAudit(r.Context(), nil, auditPageSize)
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	data := map[string]any{"Events": events, "Verified": check.Events, "FullAt": check.FullAt}
	if verr != nil {
		data["ChainError"] = verr.Error()
	}
	u.render(w, r, http.StatusOK, "audit", data)
}

// human formats a duration the way an operator reads it at a glance.
func human(d time.Duration) string {
	switch {
	case d < 0:
		return "expired " + human(-d) + " ago"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dmin", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

func (u *UI) disableUser(w http.ResponseWriter, r *http.Request) { u.setUserDisabled(w, r, true) }
func (u *UI) enableUser(w http.ResponseWriter, r *http.Request)  { u.setUserDisabled(w, r, false) }

func (u *UI) setUserDisabled(w http.ResponseWriter, r *http.Request, disabled bool) {
	name := chi.URLParam(r, "name")
	if disabled && name == currentUser(r).Name {
		u.renderUsers(w, r, http.StatusBadRequest, map[string]any{"Error": "You cannot disable yourself; ask another admin."})
		return
	}
	if err := u.cfg.Accounts.SetUserDisabled(r.Context(), name, disabled, actor(r)); err != nil {
		u.domainError(w, r, err)
		return
	}
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}

func (u *UI) account(w http.ResponseWriter, r *http.Request) {
	u.render(w, r, http.StatusOK, "account", nil)
}

func (u *UI) changePassword(w http.ResponseWriter, r *http.Request) {
	cur, next := r.PostFormValue("current"), r.PostFormValue("new")
	if next != r.PostFormValue("confirm") {
		u.render(w, r, http.StatusBadRequest, "account", map[string]any{"Error": "The new password and its confirmation differ."})
		return
	}
	name := currentUser(r).Name
	// The current password is checked under the sign-in throttle first: a
	// stolen session must not become an unthrottled password oracle.
	refuse := func(status int, msg string) {
		if status == http.StatusUnauthorized {
			status, msg = http.StatusForbidden, "The current password is wrong."
		}
		u.render(w, r, status, "account", map[string]any{"Error": msg})
	}
	if _, err := u.checkPassword(w, r, name, cur, refuse); err != nil {
		return
	}
	err := u.cfg.Accounts.ChangePassword(r.Context(), name, cur, next, actor(r))
	switch {
	case errors.Is(err, pki.Unauthenticated):
		u.render(w, r, http.StatusForbidden, "account", map[string]any{"Error": "The current password is wrong."})
	case errors.Is(err, pki.Invalid):
		u.render(w, r, http.StatusBadRequest, "account", map[string]any{"Error": pki.Message(err)})
	case err != nil:
		u.domainError(w, r, err)
	default:
		// Every other sign-in of this user ends: whoever changed the
		// password may be locking out someone who learnt the old one.
		keep := ""
		if c, _ := r.Cookie(sessionCookie); c != nil {
			keep = c.Value
		}
		if err := u.cfg.Sessions.EndOthers(r.Context(), name, keep); err != nil {
			u.serverError(w, r, err)
			return
		}
		u.render(w, r, http.StatusOK, "account", map[string]any{"Done": true})
	}
}
