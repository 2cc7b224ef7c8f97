package web

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"

	"github.com/fleetpki/fleetpki/pki"
)

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
