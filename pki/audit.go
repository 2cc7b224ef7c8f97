package pki

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"time"
)

// Actor says who caused a change, for the audit log. Every field is optional;
// a CLI command sets Name to "cli:<user>", an enrollment sets CredentialID.
type Actor struct {
	Name         string
	CredentialID string
	RemoteAddr   string
	RequestID    string
}

// AuditEvent is one entry of the append-only, hash-chained audit log. It is
// written in the same transaction as the change it records.
type AuditEvent struct {
	// Seq is the event's position in the chain, assigned by the store (1, 2, …).
	Seq    int64
	Time   time.Time
	Actor  Actor
	Action string // e.g. "certificate.issue", "certificate.revoke", "user.create"
	Target string // the object acted on: a serial, a device id, a user name …
	// Details holds further facts (profile, reason, …) as flat strings.
	Details map[string]string
	// PrevHash and Hash are set by the store: Hash = ChainHash(PrevHash).
	PrevHash []byte
	Hash     []byte
}

// Audit actions written by fleetpki.
const (
	ActionCertificateIssue  = "certificate.issue"
	ActionCertificateRenew  = "certificate.renew"
	ActionCertificateRevoke = "certificate.revoke"
	ActionDeviceRevoke      = "device.revoke"
	ActionUserCreate        = "user.create"
	ActionTokenCreate       = "token.create"
	ActionCredentialCreate  = "credential.create"
	ActionCredentialDisable = "credential.disable"
	ActionCAInit            = "ca.init"
	ActionUserUpdate        = "user.update"
	ActionWebLogin          = "web.login"
	ActionWebLogout         = "web.logout"
)

// ChainHash is SHA-256 over prev followed by the event's canonical encoding: a
// length-prefixed sequence of its fields (Seq, time in UTC microseconds, actor,
// action, target, then details sorted by key). Length prefixes make the
// encoding unambiguous, so no two different events share an encoding.
func (e AuditEvent) ChainHash(prev []byte) []byte {
	var b bytes.Buffer
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		b.Write(n[:])
		b.WriteString(s)
	}
	field("fleetpki-audit-v1")
	field(hex.EncodeToString(prev))
	field(fmt.Sprint(e.Seq))
	field(fmt.Sprint(e.Time.UTC().UnixMicro()))
	field(e.Actor.Name)
	field(e.Actor.CredentialID)
	field(e.Actor.RemoteAddr)
	field(e.Actor.RequestID)
	field(e.Action)
	field(e.Target)
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	field(fmt.Sprint(len(keys)))
	for _, k := range keys {
		field(k)
		field(e.Details[k])
	}
	sum := sha256.Sum256(b.Bytes())
	return sum[:]
}

// VerifyChain checks that events (in Seq order, starting right after an event
// whose hash is prev; nil for the start of the log) link up and that each hash
// matches its content. It returns the hash of the last event, to continue
// verification page by page.
func VerifyChain(prev []byte, events []AuditEvent) ([]byte, error) {
	for _, e := range events {
		if !bytes.Equal(e.PrevHash, prev) {
			return nil, fmt.Errorf("audit event %d: previous hash %x does not match the chain (%x)", e.Seq, e.PrevHash, prev)
		}
		if want := e.ChainHash(prev); !bytes.Equal(e.Hash, want) {
			return nil, fmt.Errorf("audit event %d: hash %x does not match its content (%x)", e.Seq, e.Hash, want)
		}
		prev = e.Hash
	}
	return prev, nil
}
