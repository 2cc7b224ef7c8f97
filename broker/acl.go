package broker

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// deviceIDPlaceholder is replaced by the connected device's id in ACL rules.
const deviceIDPlaceholder = "{device_id}"

// Rule allows a device to publish and/or subscribe under a topic filter; the
// filter may name {device_id}.
type Rule struct {
	Publish, Subscribe bool
	Filter             string
}

// DefaultRules keep every device to its own subtree.
func DefaultRules() []Rule {
	return []Rule{{Publish: true, Subscribe: true, Filter: "devices/{device_id}/#"}}
}

// ParseRules reads ACL rules, one per line: an access word (pub, sub or
// pubsub) and a topic filter, e.g.
//
//	pubsub devices/{device_id}/#
//	sub    fleet/broadcast/#
//
// Blank lines and lines starting with # are ignored. The rules replace the
// defaults, so a file that keeps them must say so.
func ParseRules(r io.Reader) ([]Rule, error) {
	var rules []Rule
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("ACL line %d: want \"pub|sub|pubsub FILTER\", got %q", n, line)
		}
		var rule Rule
		switch f[0] {
		case "pub":
			rule.Publish = true
		case "sub":
			rule.Subscribe = true
		case "pubsub":
			rule.Publish, rule.Subscribe = true, true
		default:
			return nil, fmt.Errorf("ACL line %d: access %q is not pub, sub or pubsub", n, f[0])
		}
		rule.Filter = f[1]
		if err := validFilter(strings.ReplaceAll(rule.Filter, deviceIDPlaceholder, "x")); err != nil {
			return nil, fmt.Errorf("ACL line %d: %w", n, err)
		}
		rules = append(rules, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read ACL: %w", err)
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("the ACL file has no rules: no device could do anything")
	}
	return rules, nil
}

// validFilter checks MQTT filter syntax: # only as the last level, + and #
// only as whole levels.
func validFilter(f string) error {
	if f == "" {
		return fmt.Errorf("empty topic filter")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("filter %q: # must be the last level", f)
		case l != "#" && l != "+" && strings.ContainsAny(l, "#+"):
			return fmt.Errorf("filter %q: wildcards must fill a whole level", f)
		}
	}
	return nil
}

// allowed reports whether deviceID may publish to (write) or subscribe to
// (!write) topic, which for a subscription may be a filter.
func allowed(rules []Rule, deviceID, topic string, write bool) bool {
	if write && strings.ContainsAny(topic, "+#") {
		return false // a PUBLISH topic never holds wildcards
	}
	for _, r := range rules {
		if (write && !r.Publish) || (!write && !r.Subscribe) {
			continue
		}
		if covers(strings.ReplaceAll(r.Filter, deviceIDPlaceholder, deviceID), topic) {
			return true
		}
	}
	return false
}

// covers reports whether every topic matched by filter f is matched by rule
// filter r: a subscription must not reach past what the rule grants, so
// "devices/+/#" is not covered by "devices/d1/#".
func covers(r, f string) bool {
	if strings.HasPrefix(f, "$") && !strings.HasPrefix(r, "$") {
		return false // $SYS and $share are never reached by wildcards
	}
	rl, fl := strings.Split(r, "/"), strings.Split(f, "/")
	for i, rv := range rl {
		if rv == "#" {
			return true
		}
		if i >= len(fl) {
			return false
		}
		switch fv := fl[i]; {
		case fv == "#":
			return false // f reaches deeper than r at this level
		case rv == "+":
			// any single level of f, wildcard or not, is within +
		case fv == "+" || fv != rv:
			return false
		}
	}
	return len(fl) == len(rl)
}
