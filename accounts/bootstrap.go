package accounts

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/fleetpki/fleetpki/pki"
)

// EnsureAdmin creates the first administrator, name, on first start, with
// a random password written to passwordFile (0600). The file is written
// before the user is created, so a crash in between leaves a password the
// next start uses, never a user whose password nobody knows. When the user
// exists (a restart, or another replica sharing the database) nothing
// changes. It reports whether it created the user.
func (a *Users) EnsureAdmin(ctx context.Context, name, passwordFile string, actor pki.Actor) (bool, error) {
	_, err := a.store.GetUser(ctx, name)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, pki.NotFound) {
		return false, fmt.Errorf("look up the admin user: %w", err)
	}
	password, wrote, err := readOrCreatePasswordFile(passwordFile)
	if err != nil {
		return false, err
	}
	if _, err := a.CreateUser(ctx, name, pki.RoleAdmin, password, actor); err != nil {
		if wrote {
			_ = os.Remove(passwordFile) // the password belongs to no user
		}
		if errors.Is(err, pki.Conflict) {
			return false, nil // created by another process meanwhile
		}
		return false, fmt.Errorf("create the admin user: %w", err)
	}
	return true, nil
}

// readOrCreatePasswordFile returns the password stored at path or, when the
// file does not exist, creates it (exclusively, 0600) with a random password.
func readOrCreatePasswordFile(path string) (password string, wrote bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		p := strings.TrimRight(string(b), "\r\n")
		if p == "" {
			return "", false, fmt.Errorf("%s is empty: delete it to have a new admin password generated", path)
		}
		return p, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read the admin password file: %w", err)
	}
	password = RandomPassword()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("create the admin password file: %w", err)
	}
	_, err = f.WriteString(password + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return "", false, fmt.Errorf("write the admin password file: %w", err)
	}
	return password, true, nil
}
