package web

import (
	"fmt"
	"net/http"
	"time"
)

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

// auditPageSize is how many of the newest audit events a page shows.
const auditPageSize = 200

func (u *UI) audit(w http.ResponseWriter, r *http.Request) {
	check, verr := u.cfg.Audit.VerifyRecent(r.Context())
	events, err := u.cfg.Audit.Recent(r.Context(), nil, auditPageSize)
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
