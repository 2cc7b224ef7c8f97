// Package ocspresponder answers OCSP requests (RFC 6960, with the RFC 5019
// profile for caching) about the certificates of fleetpki's issuing CA.
//
// Shape: a one-method Source produces a signed response for a parsed
// request; decorators (the issuer filter) wrap it; Responder is the
// http.Handler around a Source. Policy: never answer "good" without knowing
// — a status that cannot be read is tryLater, never a stale good; requests
// for another issuer are unauthorized before any storage is touched; bad
// requests get an OCSP malformedRequest, never JSON and never a 500.
// Logging: Error only for our own faults (signing, storage); bad client
// input at Debug.
package ocspresponder
