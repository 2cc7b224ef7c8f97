package main

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// durationValue is a flag.Value for a non-negative duration that, besides
// Go's units (h, m, s), accepts whole days ("30d"), the unit people use for
// certificate and credential lifetimes.
type durationValue time.Duration

func (d *durationValue) String() string {
	v := time.Duration(*d)
	if v > 0 && v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return v.String()
}

func (d *durationValue) Set(s string) error {
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}

func parseDuration(s string) (time.Duration, error) {
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

// listValue is a repeatable flag whose values may also be comma-separated.
type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }

func (l *listValue) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}
