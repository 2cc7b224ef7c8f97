// Package pki is fleetpki's domain vocabulary: serials, devices, certificate
// records, statuses, RFC 5280 revocation reasons, audit events, error kinds and
// the clock. It depends on the standard library only, so every other package
// can share these names without pulling in each other.
package pki
