// Package ca is fleetpki's issuing core: the CA hierarchy (a root and one
// issuing intermediate), its keys, the certificate profiles, and issuing,
// renewing and revoking device certificates.
//
// Policy:
//   - Keys live in the data directory (DataDir/ca/*.key, mode 0600, PKCS#8,
//     optionally password-encrypted) and are loaded through go.step.sm/crypto/kms,
//     so an HSM (pkcs11:) can replace the files later without touching callers.
//     Signing goes through smallstep's cas/apiv1.CertificateAuthorityService
//     (softcas) for the same reason.
//   - What a certificate says is decided by the profile, never by the CSR: the
//     CSR contributes its public key and nothing else. The CSR's signature is
//     checked (proof of possession) and weak or unknown keys are refused.
//   - A certificate is returned only after it, its device row and its audit
//     event are committed to the store; a store failure means no certificate.
//   - Revocation is one conditional store update and is idempotent; revocation
//     events go to in-process subscribers only after the commit. A subscriber
//     that does not keep up loses events (they are counted, never block
//     revocation) and must resynchronise from the store.
//   - Bad caller input is a pki.Invalid error (logged at Debug); faults of our
//     own (store, signer) are logged at Error by the caller that sees them.
package ca
