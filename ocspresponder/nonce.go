package ocspresponder

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"
)

// x/crypto/ocsp puts extra extensions into the single response, while RFC
// 6960 §4.4.1 wants the nonce in responseExtensions (golang/go#20001). So a
// nonce answer takes the signed response apart, sets producedAt and the
// nonce in tbsResponseData, names the current responder (ResponderID and the
// certificate the response carries: the stored response may have been
// signed by an earlier responder, before a restart or a rotation), and
// signs it again with the current responder's key.

type ocspResponseASN1 struct {
	Status asn1.Enumerated
	Bytes  responseBytesASN1 `asn1:"explicit,tag:0"`
}

type responseBytesASN1 struct {
	Type     asn1.ObjectIdentifier
	Response []byte
}

type basicResponseASN1 struct {
	TBS          asn1.RawValue
	SigAlgorithm asn1.RawValue
	Signature    asn1.BitString
	Certificates []asn1.RawValue `asn1:"optional,explicit,tag:0"`
}

type responseDataASN1 struct {
	Version     int `asn1:"optional,explicit,tag:0,default:0"`
	ResponderID asn1.RawValue
	ProducedAt  time.Time `asn1:"generalized"`
	Responses   asn1.RawValue
	Extensions  []rawExtension `asn1:"optional,explicit,tag:1"`
}

var oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}

// Nonce lengths RFC 8954 allows; a request whose nonce is outside them is
// answered without one (the cacheable answer), as the RFC permits.
const (
	minNonce = 1
	maxNonce = 32
)

// validNonce reports whether an id-pkix-ocsp-nonce extension value (the DER
// of its OCTET STRING) holds 1 to 32 octets.
func validNonce(value []byte) bool {
	var octets []byte
	rest, err := asn1.Unmarshal(value, &octets)
	return err == nil && len(rest) == 0 && len(octets) >= minNonce && len(octets) <= maxNonce
}

// withNonce returns der re-signed by s with the nonce extension (its value
// as the client sent it) in responseExtensions, producedAt set to now, and
// s's responder as ResponderID and as the certificate carried.
func withNonce(der, nonce []byte, s *Signer, now time.Time) ([]byte, error) {
	key := s.Key
	if _, ok := key.Public().(*ecdsa.PublicKey); !ok {
		return nil, errors.New("nonce responses need an ECDSA responder key")
	}
	var resp ocspResponseASN1
	if _, err := asn1.Unmarshal(der, &resp); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	var basic basicResponseASN1
	if _, err := asn1.Unmarshal(resp.Bytes.Response, &basic); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	var data responseDataASN1
	if _, err := asn1.Unmarshal(basic.TBS.FullBytes, &data); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	data.ProducedAt = now.UTC().Truncate(time.Second)
	data.Extensions = []rawExtension{{ID: oidNonce, Value: nonce}}
	// ResponderID byName, as x/crypto/ocsp writes it: [1] EXPLICIT Name.
	data.ResponderID = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: s.Responder.RawSubject}
	tbs, err := asn1.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	h := sha256.Sum256(tbs)
	sig, err := key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("nonce: sign: %w", err)
	}
	alg, err := asn1.Marshal(struct{ Algorithm asn1.ObjectIdentifier }{oidECDSAWithSHA256})
	if err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	basic.TBS = asn1.RawValue{FullBytes: tbs}
	basic.SigAlgorithm = asn1.RawValue{FullBytes: alg}
	basic.Signature = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	basic.Certificates = []asn1.RawValue{{FullBytes: s.Responder.Raw}}
	if resp.Bytes.Response, err = asn1.Marshal(basic); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return asn1.Marshal(resp)
}
