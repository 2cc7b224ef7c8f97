package main

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // to tamper with the audit log as an attacker with file access would
)

func TestStartupErrors(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	aFile := filepath.Join(tmp, "file")
	if err := os.WriteFile(aFile, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(tmp, "read-only")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		want     string
		skipRoot bool // root writes into a 0500 directory regardless
	}{
		{"bad http addr", []string{"--http-addr", "abc"}, `--http-addr "abc": missing port in address`, false},
		{"port out of range", []string{"--https-addr", "127.0.0.1:70000"}, `--https-addr "127.0.0.1:70000": port "70000"`, false},
		{"data dir is a file", []string{"--data-dir", aFile}, "not a directory", false},
		{"data dir cannot be created", []string{"--data-dir", filepath.Join(aFile, "sub")}, "cannot create", false},
		{"data dir read-only", []string{"--data-dir", readOnly}, "not writable", true},
		{"malformed public url", []string{"--public-url", "ftp//nowhere"}, `--public-url "ftp//nowhere"`, false},
		{"unreachable database", []string{"--database-url", "postgres://postgres@127.0.0.1:1/x"}, "127.0.0.1:1 cannot be reached", false},
		{"not a postgres url", []string{"--database-url", "mysql://db/x"}, "--database-url: want a postgres://", false},
		{"bad log format", []string{"--log-format", "xml"}, `--log-format "xml"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.skipRoot && os.Geteuid() == 0 {
				t.Skip("running as root: permissions do not stop root")
			}
			args := append([]string{"serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--http-addr", "127.0.0.1:0"}, tt.args...)
			r := runCLI(t, "", args...)
			if r.code == 0 {
				t.Fatalf("exit 0, want failure; stderr: %s", r.stderr)
			}
			checkOneLineError(t, r, tt.want)
		})
	}
}

// checkOneLineError requires exactly one line on standard error, starting
// with "fleetpki: " and containing want, and no trace of a panic.
func checkOneLineError(t *testing.T, r result, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 {
		t.Errorf("stderr has %d lines, want 1:\n%s", len(lines), r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "fleetpki: ") || !strings.Contains(r.stderr, want) {
		t.Errorf("stderr = %q, want a line starting with \"fleetpki: \" containing %q", r.stderr, want)
	}
	if strings.Contains(r.stderr, "goroutine") || strings.Contains(r.stderr, "panic") {
		t.Errorf("stderr shows a panic:\n%s", r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"migrate", "--bogus"}, "flag provided but not defined: -bogus"},
		{"missing name", []string{"user", "create", "--role", "admin"}, "--name and --role are required"},
		{"bad role", []string{"user", "create", "--name", "x", "--role", "root"}, `unknown role "root"`},
		{"revoke without a target", []string{"revoke"}, "give exactly one of --serial and --device-id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, "", append(tt.args, "--data-dir", t.TempDir())...)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d", r.code, exitUsage)
			}
			checkOneLineError(t, r, tt.want)
		})
	}
}

func TestSecretsAloneOnLastLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A CA must exist for credential create to check profile names.
	mustRun(t, "", "init", "--data-dir", dir)
	tests := []struct {
		name string
		args []string
		want *regexp.Regexp
	}{
		{"generated password", []string{"user", "create", "--name", "ops", "--role", "operator"}, regexp.MustCompile(`^[A-Za-z0-9_-]{24}$`)},
		{"api token", []string{"user", "token", "--name", "ops", "--ttl", "30d"}, regexp.MustCompile(`^fpt_[A-Za-z0-9_-]{43}$`)},
		{"enrollment credential", []string{"credential", "create", "--name", "line-1", "--profile", "device",
			"--device-pattern", "sn-[0-9]+", "--expires", "720h", "--max-uses", "100"}, regexp.MustCompile(`^fpe_[A-Za-z0-9_-]{43}$`)},
	}
	// Sequential: the token needs the user.
	for _, tt := range tests {
		r := mustRun(t, "", append(tt.args, "--data-dir", dir)...)
		if !tt.want.MatchString(r.lastLine()) {
			t.Errorf("%s: last stdout line %q does not match %s", tt.name, r.lastLine(), tt.want)
		}
		if strings.Count(r.stdout, "\n") != 1 {
			t.Errorf("%s: stdout holds more than the secret: %q", tt.name, r.stdout)
		}
	}

	r := mustRun(t, "a password from a manager\n", "user", "create", "--name", "aud", "--role", "auditor", "--password-stdin", "--data-dir", dir)
	if r.stdout != "" {
		t.Errorf("--password-stdin printed %q; nothing was generated, so nothing should be shown", r.stdout)
	}
	r = runCLI(t, "", "credential", "create", "--name", "line-2", "--profile", "device,gateway", "--data-dir", dir)
	if r.code != exitUsage {
		t.Errorf("unknown profile: exit %d, want %d", r.code, exitUsage)
	}
	checkOneLineError(t, r, `unknown profile "gateway"`)
}

func TestAuditVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if r := mustRun(t, "", "audit", "verify", "--data-dir", dir); !strings.Contains(r.stdout, "0 events") {
		t.Errorf("fresh data dir: stdout %q, want 0 events", r.stdout)
	}
	mustRun(t, "", "init", "--data-dir", dir)
	mustRun(t, "", "user", "create", "--name", "ops", "--role", "operator", "--data-dir", dir)
	mustRun(t, "", "user", "token", "--name", "ops", "--data-dir", dir)
	if r := mustRun(t, "", "audit", "verify", "--data-dir", dir); !strings.Contains(r.stdout, "3 events") {
		t.Errorf("stdout %q, want 3 events", r.stdout)
	}

	db, err := sql.Open("sqlite", filepath.Join(dir, "fleetpki.db"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.ExecContext(context.Background(), "UPDATE audit_events SET target = 'mallory' WHERE seq = 2")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("tampered with %d rows, want 1", n)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	r := runCLI(t, "", "audit", "verify", "--data-dir", dir)
	if r.code != exitError {
		t.Fatalf("audit verify after tampering: exit %d, want %d\nstdout: %s", r.code, exitError, r.stdout)
	}
	checkOneLineError(t, r, "audit event 2")
}

// Users and credentials can be disabled from the command line; a disabled
// credential no longer enrolls and a disabled user's token no longer works.
func TestDisableFromTheCommandLine(t *testing.T) {
	e := newEnrollEnv(t)
	token := mustRun(t, "", "user", "token", "--data-dir", e.data, "--name", "admin").lastLine()
	list := mustRun(t, "", "credential", "list", "--data-dir", e.data).stdout
	var id string
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Split(line, "\t"); len(f) >= 7 && f[1] == "station" {
			id = f[0]
		}
	}
	if id == "" {
		t.Fatalf("credential list has no station credential:\n%s", list)
	}
	mustRun(t, "", "credential", "disable", "--data-dir", e.data, "--id", id)
	time.Sleep(1100 * time.Millisecond) // a running serve trusts an enabled credential for a second
	if r := e.enroll(t, "--device-id", "dev-1", "--out", t.TempDir()); r.code == 0 || !strings.Contains(r.stderr, "disabled") {
		t.Fatalf("enroll with a disabled credential: %d %s", r.code, r.stderr)
	}
	mustRun(t, "", "user", "disable", "--data-dir", e.data, "--name", "admin")
	out, _ := exec.Command("curl", "-sk", "-H", "Authorization: Bearer "+token, "https://"+e.srv.httpsAddr+"/api/v1/devices").CombinedOutput()
	if !strings.Contains(string(out), `"status":401`) && !strings.Contains(string(out), `"status": 401`) {
		t.Fatalf("a disabled user's token still works: %s", out)
	}
	if r := runCLI(t, "", "user", "disable", "--data-dir", e.data, "--name", "nobody"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("disable a missing user: %d %s", r.code, r.stderr)
	}
}
