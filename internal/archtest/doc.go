// Package archtest holds no code: its test keeps the import directions of
// docs/architecture.md (DESIGN.md's layout table) true as packages are added.
// Data flows one way, api/web → ca → store, and only cmd/fleetpki knows the
// concrete store backends.
package archtest
