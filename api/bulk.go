package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/fleetpki/fleetpki/api/wire"
	"github.com/fleetpki/fleetpki/pki"
)

func toJob(j pki.RevocationJob) wire.RevocationJob {
	out := wire.RevocationJob{ID: j.ID, Selector: wire.Selector{Key: j.Selector.MetaKey, Value: j.Selector.MetaValue},
		SetHash: j.SetHash, Reason: j.Reason.String(), Created: rfc3339(j.Created), Revoked: j.Revoked, Done: j.Done}
	if j.Finished != nil {
		out.Finished = rfc3339(*j.Finished)
	}
	return out
}

// previewBulk answers what a bulk revocation of the selector would revoke
// now, with the set's hash that the revocation must carry.
func (a *API) previewBulk(w http.ResponseWriter, r *http.Request) {
	var req wire.BulkPreviewRequest
	if err := decode(r, &req); err != nil {
		a.err.send(w, r, err)
		return
	}
	sel := pki.Selector{MetaKey: req.Selector.Key, MetaValue: req.Selector.Value}
	m, err := a.cfg.Revoker.PreviewMatching(r.Context(), sel)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	sample := m.Sample
	if sample == nil {
		sample = []string{}
	}
	writeJSON(w, http.StatusOK, wire.BulkPreview{Selector: req.Selector, Devices: m.Devices, Certificates: m.Certificates,
		SetHash: m.Hash, Sample: sample})
}

// revokeBulk revokes what the preview named: 409 when the set changed
// since; 200 with the finished job, or 202 while a large one runs on
// (follow it at /api/v1/revocations/jobs/{id}).
func (a *API) revokeBulk(w http.ResponseWriter, r *http.Request) {
	var req wire.BulkRevokeRequest
	if err := decode(r, &req); err != nil {
		a.err.send(w, r, err)
		return
	}
	if req.SetHash == "" {
		a.err.send(w, r, withCode("set_hash_missing", pki.Errorf(pki.Invalid, "set_hash is required: preview the set first (POST /api/v1/revocations:bulk-preview)")))
		return
	}
	reason, err := pki.ParseRevocationReason(req.Reason)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	sel := pki.Selector{MetaKey: req.Selector.Key, MetaValue: req.Selector.Value}
	job, err := a.cfg.Revoker.RevokeMatching(r.Context(), sel, req.SetHash, reason, actor(r, "user:"+userOf(r).Name))
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/revocations/jobs/"+job.ID)
	status := http.StatusOK
	if !job.Done {
		status = http.StatusAccepted
	}
	writeJSON(w, status, toJob(job))
}

func (a *API) getJob(w http.ResponseWriter, r *http.Request) {
	job, err := a.cfg.Revoker.Job(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toJob(job))
}
