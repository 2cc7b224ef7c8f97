// Package accounts manages who may talk to fleetpki: administrators (users
// with passwords, API tokens, web UI sessions, the broker role's machine
// identities) and factory lines (enrollment credentials).
//
// Policy: secrets are generated here, shown to their caller once, and only
// their hashes are stored: SHA-256 for high-entropy random secrets (tokens,
// credentials, session ids), argon2id for passwords a person chose, at most
// a few at a time. Every change writes an audit event in the same
// transaction (the store's promise).
package accounts
