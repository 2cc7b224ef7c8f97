package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFlagWinsOverEnvWinsOverDefault(t *testing.T) {
	env := map[string]string{
		"FLEETPKI_HTTP_ADDR":    "0.0.0.0:9000",
		"FLEETPKI_PUBLIC_URL":   "https://pki.example.com",
		"FLEETPKI_KEY_PASSWORD": "s3cret",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg := &Config{}
	fs := newFlags(cfg, "serve", lookup)
	if err := ApplyEnv(fs, lookup); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--public-url", "http://flag.example.com", "--data-dir", t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, got, want string }{
		{"default", cfg.HTTPSAddr, "127.0.0.1:8443"},
		{"env", cfg.HTTPAddr, "0.0.0.0:9000"},
		{"flag over env", cfg.PublicURL, "http://flag.example.com"},
		{"key password from env", string(cfg.KeyPassword), "s3cret"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"port zero picks a free port", func(c *Config) { c.HTTPAddr = "127.0.0.1:0" }, ""},
		{"empty mqtt addr disables the broker", func(c *Config) { c.MQTTAddr = "" }, ""},
		{"password file", func(c *Config) { c.KeyPasswordFile = pwFile }, ""},
		{"missing port", func(c *Config) { c.HTTPAddr = "localhost" }, `--http-addr "localhost": missing port in address`},
		{"named port", func(c *Config) { c.MQTTAddr = "localhost:mqtt" }, `port "mqtt" is not a number`},
		{"empty https addr", func(c *Config) { c.HTTPSAddr = "" }, `--https-addr ""`},
		{"relative public url", func(c *Config) { c.PublicURL = "/pki" }, "must start with http:// or https://"},
		{"public url with query", func(c *Config) { c.PublicURL = "http://x/?a=b" }, "must not carry a query"},
		{"bad key algorithm", func(c *Config) { c.KeyAlgorithm = "ed25519" }, `--key-algorithm "ed25519"`},
		{"bad log level", func(c *Config) { c.LogLevel = "verbose" }, `--log-level "verbose"`},
		{"two password sources", func(c *Config) { c.KeyPasswordFile = pwFile; c.envKeyPassword = "x" }, "both set"},
		{"missing password file", func(c *Config) { c.KeyPasswordFile = pwFile + ".nope" }, "no such file"},
		{"empty data dir", func(c *Config) { c.DataDir = "" }, "--data-dir \"\": must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{}
			fs := newFlags(cfg, "serve", func(string) (string, bool) { return "", false })
			if err := fs.Parse([]string{"--data-dir", filepath.Join(t.TempDir(), "new")}); err != nil {
				t.Fatal(err)
			}
			tt.mutate(cfg)
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateCreatesDataDir0700(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := PrepareDataDir(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, want 0700", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the writability test left %d files behind", len(entries))
	}
}

func TestParseDuration(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * 24 * time.Hour, true},
		{"0", 0, true},
		{"12h30m", 12*time.Hour + 30*time.Minute, true},
		{"1.5d", 0, false},
		{"-1h", 0, false},
		{"soon", 0, false},
	} {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func newFlags(cfg *Config, command string, lookup func(string) (string, bool)) *flag.FlagSet {
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.Register(fs, command, lookup)
	return fs
}
