//go:build cgo && !nopkcs11

package ca

// pkcs11Compiled mirrors go.step.sm/crypto/kms/pkcs11's build constraint.
const pkcs11Compiled = true
