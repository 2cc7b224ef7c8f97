package ocspresponder

import (
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/ocsp"
)

// oidNonce is id-pkix-ocsp-nonce (RFC 6960 §4.4.1).
var oidNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

// The outer shape of an OCSPRequest, read only far enough to count its
// CertIDs and find a nonce: x/crypto/ocsp reads just the first CertID and
// drops the extensions.
type rawOCSPRequest struct {
	TBS       rawTBSRequest
	Signature asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type rawTBSRequest struct {
	Version       int           `asn1:"explicit,tag:0,default:0,optional"`
	RequestorName asn1.RawValue `asn1:"explicit,tag:1,optional"`
	RequestList   []asn1.RawValue
	Extensions    []rawExtension `asn1:"explicit,tag:2,optional"`
}

type rawExtension struct {
	ID       asn1.ObjectIdentifier
	Critical bool `asn1:"optional"`
	Value    []byte
}

type singleRequest struct {
	CertID     certID
	Extensions asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type certID struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	NameHash      []byte
	IssuerKeyHash []byte
	SerialNumber  *big.Int
}

// hashes are the CertID hash algorithms answered, by OID.
var hashes = map[string]crypto.Hash{
	"1.3.14.3.2.26":          crypto.SHA1,
	"2.16.840.1.101.3.4.2.1": crypto.SHA256,
	"2.16.840.1.101.3.4.2.2": crypto.SHA384,
	"2.16.840.1.101.3.4.2.3": crypto.SHA512,
}

// Request is a parsed OCSP request with the parts fleetpki uses.
type Request struct {
	*ocsp.Request
	// Nonce is the request's nonce extension value, if any.
	Nonce []byte
}

// errMalformed marks a request that is not a well-formed single-CertID OCSP request.
var errMalformed = errors.New("malformed OCSP request")

// ParseRequest parses DER. A request must carry exactly one CertID: fleetpki
// answers one certificate per request (as RFC 5019 clients ask), and
// answering only the first of several would mislead the client about the
// others. Signed requests are refused (nothing here checks their signatures).
func ParseRequest(der []byte) (*Request, error) {
	var raw rawOCSPRequest
	rest, err := asn1.Unmarshal(der, &raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	case len(rest) > 0:
		return nil, fmt.Errorf("%w: trailing data", errMalformed)
	case len(raw.TBS.RequestList) != 1:
		return nil, fmt.Errorf("%w: %d CertIDs, want exactly one", errMalformed, len(raw.TBS.RequestList))
	case len(raw.Signature.FullBytes) > 0:
		return nil, fmt.Errorf("%w: signed requests are not supported", errMalformed)
	}
	// The one CertID, read here rather than by ocsp.ParseRequest, which
	// would parse the whole request a second time.
	var one singleRequest
	if rest, err := asn1.Unmarshal(raw.TBS.RequestList[0].FullBytes, &one); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: bad CertID", errMalformed)
	}
	h, ok := hashes[one.CertID.HashAlgorithm.Algorithm.String()]
	if !ok || !h.Available() {
		return nil, fmt.Errorf("%w: unsupported hash algorithm", errMalformed)
	}
	if len(one.CertID.NameHash) != h.Size() || len(one.CertID.IssuerKeyHash) != h.Size() {
		return nil, fmt.Errorf("%w: issuer hashes of the wrong length", errMalformed)
	}
	req := &ocsp.Request{HashAlgorithm: h, IssuerNameHash: one.CertID.NameHash,
		IssuerKeyHash: one.CertID.IssuerKeyHash, SerialNumber: one.CertID.SerialNumber}
	if req.SerialNumber == nil || req.SerialNumber.Sign() <= 0 {
		return nil, fmt.Errorf("%w: no positive serial", errMalformed)
	}
	r := &Request{Request: req}
	for _, e := range raw.TBS.Extensions {
		if e.ID.Equal(oidNonce) {
			r.Nonce = e.Value
		}
	}
	return r, nil
}
