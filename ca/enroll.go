package ca

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fleetpki/fleetpki/pki"
)

// Enroller applies an enrollment credential's rules (profiles, device-id
// pattern, uses) to a factory line's request and has the CA issue.
type Enroller struct {
	ca       *CA
	accounts *Accounts
}

// NewEnroller returns an Enroller over the CA and the accounts.
func NewEnroller(c *CA, a *Accounts) *Enroller { return &Enroller{ca: c, accounts: a} }

// Enroll issues a certificate for req under cred. The credential's rules
// are checked first, then the request itself, and only then is one use of
// the credential spent: bad input spends nothing.
func (e *Enroller) Enroll(ctx context.Context, cred pki.Credential, req IssueRequest) (*Issued, error) {
	profile := req.Profile
	if profile == "" {
		profile = DefaultProfile
	}
	allowed := cred.Profiles
	if len(allowed) == 0 {
		allowed = []string{DefaultProfile}
	}
	if !slices.Contains(allowed, profile) {
		return nil, pki.Errorf(pki.Forbidden, "the credential may not enroll with profile %q", profile)
	}
	if cred.DevicePattern != "" {
		re, err := CompileDevicePattern(cred.DevicePattern)
		if err != nil {
			return nil, fmt.Errorf("credential %s: %w", cred.ID, err)
		}
		if err := pki.ValidateDeviceID(req.DeviceID); err != nil {
			return nil, err
		}
		if !re.MatchString(req.DeviceID) {
			return nil, pki.Errorf(pki.Forbidden, "device id %q does not match the credential's pattern", req.DeviceID)
		}
	}
	req.Profile = profile
	req.Actor.CredentialID = cred.ID
	if err := e.ca.CheckRequest(ctx, req); err != nil {
		return nil, err
	}
	if err := e.accounts.useCredential(ctx, cred.ID); err != nil {
		return nil, err
	}
	iss, err := e.ca.Issue(ctx, req)
	if err != nil {
		if errors.Is(err, pki.Invalid) {
			return nil, err
		}
		return nil, fmt.Errorf("enroll %q: %w", req.DeviceID, err)
	}
	return iss, nil
}
