package config

import (
	"errors"
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
