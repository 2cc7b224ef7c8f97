package web

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

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
	user, err := u.cfg.Users.CheckPassword(r.Context(), name, password)
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
	err := u.cfg.Users.ChangePassword(r.Context(), name, cur, next, actor(r))
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
