package web

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/fleetpki/fleetpki/pki"
)

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
