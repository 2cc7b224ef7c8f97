package web

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/fleetpki/fleetpki/pki"
)

// bulkForm previews a bulk revocation by metadata: how many devices and
// certificates match, a sample of them, and the set's hash that the
// revocation form carries (package ca: RevokeMatching).
func (u *UI) bulkForm(w http.ResponseWriter, r *http.Request) {
	meta := r.URL.Query().Get("meta")
	data := map[string]any{"Meta": meta, "Reasons": reasons}
	if meta != "" {
		k, v, ok := parseMeta(meta)
		if !ok {
			u.fail(w, r, http.StatusBadRequest, "Select devices by metadata as key=value, e.g. lot=2026-W41.")
			return
		}
		m, err := u.cfg.Revoker.PreviewMatching(r.Context(), pki.Selector{MetaKey: k, MetaValue: v})
		if err != nil {
			u.domainError(w, r, err)
			return
		}
		data["Set"] = m
	}
	u.render(w, r, http.StatusOK, "bulk", data)
}

// bulkRevoke revokes the previewed set: refused (409) when it changed since
// the preview, or unless the operator typed the number of devices.
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
	if r.PostFormValue("confirm") != r.PostFormValue("count") || r.PostFormValue("count") == "" {
		u.fail(w, r, http.StatusBadRequest, "Type the number of devices exactly to confirm; nothing was revoked.")
		return
	}
	job, err := u.cfg.Revoker.RevokeMatching(r.Context(), pki.Selector{MetaKey: k, MetaValue: v}, r.PostFormValue("hash"), reason, actor(r))
	if err != nil {
		u.domainError(w, r, err)
		return
	}
	state := "done"
	if !job.Done {
		state = "still running; it finishes in the background"
	}
	u.render(w, r, http.StatusOK, "bulkdone", map[string]any{"What": fmt.Sprintf("%s devices with %s", r.PostFormValue("count"), meta),
		"Job": job, "Reason": reason, "State": state, "Revoked": strconv.FormatInt(job.Revoked, 10)})
}
