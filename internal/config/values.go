package config

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// DurationValue is a flag.Value for a non-negative duration that, besides
// Go's units (h, m, s), accepts whole days ("30d"), the unit people use for
// certificate and credential lifetimes.
type DurationValue time.Duration

func (d *DurationValue) String() string {
	v := time.Duration(*d)
	if v > 0 && v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return v.String()
}

func (d *DurationValue) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = DurationValue(v)
	return nil
}

// ParseDuration reads whole days ("30d") or a Go duration ("12h"), not negative.
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, errors.New("want whole days (e.g. 30d) or a Go duration (e.g. 12h)")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want whole days (e.g. 30d) or a Go duration (e.g. 12h)")
	}
	if v < 0 {
		return 0, errors.New("must not be negative")
	}
	return v, nil
}

// ListValue is a repeatable flag whose values may also be comma-separated.
type ListValue []string

func (l *ListValue) String() string { return strings.Join(*l, ",") }

func (l *ListValue) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// MapValue collects a repeatable key=value flag.
type MapValue map[string]string

func (m MapValue) String() string { return fmt.Sprint(map[string]string(m)) }

// Set adds one key=value.
func (m MapValue) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return errors.New("want key=value")
	}
	m[k] = val
	return nil
}

// ReadSecret reads a secret from file (its first line) or, when file is
// empty, from the environment variable env: never from a flag, which every
// local user can read in the process list.
func ReadSecret(file string, lookupEnv func(string) (string, bool), env string) (string, error) {
	if file == "" {
		v, _ := lookupEnv(env)
		return strings.TrimSpace(v), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", file, UnwrapPath(err))
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}

// ParseBytes reads a size: a number of bytes, or one with a binary unit
// (KiB, MiB, GiB).
func ParseBytes(s string) (uint64, error) {
	mult := uint64(1)
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil || n > (1<<50)/mult {
		return 0, fmt.Errorf("%q is not a size (bytes, KiB, MiB or GiB)", s)
	}
	return n * mult, nil
}

// Version describes the build: the version linked in (or, without one, the
// module's and its revision from the toolchain), the platform, the Go
// version, and whether PKCS#11 (cgo) is compiled in.
func Version(linked string, pkcs11 bool) string {
	v := linked
	if bi, ok := debug.ReadBuildInfo(); ok && v == "" {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v += " " + s.Value
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	p := "pkcs11"
	if !pkcs11 {
		p = "no-pkcs11"
	}
	return fmt.Sprintf("fleetpki %s %s/%s %s %s", v, runtime.GOOS, runtime.GOARCH, runtime.Version(), p)
}
