package broker

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		rule, filter string
		want         bool
	}{
		{"devices/d1/#", "devices/d1/temp", true},
		{"devices/d1/#", "devices/d1", true},
		{"devices/d1/#", "devices/d1/#", true},
		{"devices/d1/#", "devices/d1/+/x", true},
		{"devices/d1/#", "devices/+/#", false},
		{"devices/d1/#", "devices/#", false},
		{"devices/d1/#", "#", false},
		{"devices/d1/#", "devices/d2/temp", false},
		{"devices/d1/#", "devices/d10/temp", false},
		{"devices/+/temp", "devices/d2/temp", true},
		{"devices/+/temp", "devices/+/temp", true},
		{"devices/+/temp", "devices/d2/#", false},
		{"devices/+/temp", "devices/d2/temp/x", false},
		{"#", "$SYS/broker", false},
		{"+/x", "$share/g/x", false},
	} {
		if got := covers(tc.rule, tc.filter); got != tc.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tc.rule, tc.filter, got, tc.want)
		}
	}
}

func TestParseRules(t *testing.T) {
	rules, err := ParseRules(strings.NewReader("# fleet\npubsub devices/{device_id}/#\n\nsub fleet/broadcast/#\n"))
	if err != nil || len(rules) != 2 || !rules[1].Subscribe || rules[1].Publish {
		t.Fatalf("rules %+v, err %v", rules, err)
	}
	if !allowed(rules, "d1", "devices/d1/x", true) || allowed(rules, "d1", "fleet/broadcast/x", true) || !allowed(rules, "d1", "fleet/broadcast/#", false) {
		t.Error("rules applied wrongly")
	}
	for _, bad := range []string{"", "write devices/#", "pub a/#/b", "pub a/b#", "pubsub"} {
		if _, err := ParseRules(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseRules(%q) accepted", bad)
		}
	}
}

// FuzzACL checks the ACL against an independent matcher: a concrete topic is
// allowed exactly when a rule's filter matches it, wildcards are never
// published, and a filter the rules allow only reaches topics they allow.
func FuzzACL(f *testing.F) {
	f.Add("devices/{device_id}/#", "d1", "devices/d1/a", "devices/+/a")
	f.Add("devices/+/temp", "d1", "devices/x/temp", "devices/#")
	f.Add("a/+/#", "x", "a/b", "a/+")
	f.Fuzz(func(t *testing.T, rule, id, topic, filter string) {
		for _, s := range []string{rule, id, topic, filter} {
			if !utf8.ValidString(s) { // MQTT topics are UTF-8; mochi refuses others
				return
			}
		}
		if validFilter(strings.ReplaceAll(rule, deviceIDPlaceholder, "x")) != nil || strings.ContainsAny(id, "/+#$") || id == "" ||
			strings.ContainsAny(topic, "+#") || topic == "" || validFilter(filter) != nil {
			return
		}
		rules := []Rule{{Publish: true, Subscribe: true, Filter: rule}}
		r := strings.ReplaceAll(rule, deviceIDPlaceholder, id)
		// Wildcards never reach $-topics; a rule that names one literally does.
		want := match(r, topic) && (!strings.HasPrefix(topic, "$") || strings.HasPrefix(r, "$"))
		if got := allowed(rules, id, topic, true); got != want {
			t.Fatalf("publish %q under %q: allowed %v, match %v", topic, r, got, want)
		}
		if allowed(rules, id, filter, true) && strings.ContainsAny(filter, "+#") {
			t.Fatalf("published to a wildcard %q", filter)
		}
		if allowed(rules, id, filter, false) && match(filter, topic) && !match(r, topic) && !strings.HasPrefix(topic, "$") {
			t.Fatalf("filter %q allowed under %q reaches %q", filter, r, topic)
		}
	})
}

// match is MQTT topic matching written independently, as a regexp.
func match(filter, topic string) bool {
	var b strings.Builder
	b.WriteString("(?s)^") // topics may hold any character, a newline too
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		switch l {
		case "#":
			if i == 0 {
				b.WriteString(".*")
			} else {
				// "a/#" matches "a" too: the separator is optional.
				s := b.String()
				b.Reset()
				b.WriteString(strings.TrimSuffix(s, "/") + "(/.*)?")
			}
			b.WriteString("$")
			return regexp.MustCompile(b.String()).MatchString(topic)
		case "+":
			b.WriteString("[^/]*")
		default:
			b.WriteString(regexp.QuoteMeta(l))
		}
		if i < len(levels)-1 {
			b.WriteString("/")
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String()).MatchString(topic)
}

// The device id comes from the device URI or the CN; a service's
// certificate (serverAuth: a broker's, a server's) names no device, however
// device-like its CN, and ids that would break topic filters are refused.
func TestDeviceID(t *testing.T) {
	uri := func(s string) *url.URL { u, _ := url.Parse(s); return u }
	for _, tc := range []struct {
		cert *x509.Certificate
		want string // "" means refused
	}{
		{&x509.Certificate{Subject: pkix.Name{CommonName: "sensor-1"}, URIs: []*url.URL{uri("urn:fleetpki:device:sensor-1")},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, "sensor-1"},
		{&x509.Certificate{URIs: []*url.URL{uri("urn:fleetpki:device:" + strings.Repeat("a", 70))}}, strings.Repeat("a", 70)},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "sensor-2"}}, "sensor-2"},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "sensor-1"}, URIs: []*url.URL{uri("urn:fleetpki:device:sensor-2")}}, ""},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "b1.mqtt.example"}, DNSNames: []string{"b1.mqtt.example"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, ""},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "sensor-3"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}, ""},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "a/b"}}, ""},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "$SYS"}}, ""},
		{&x509.Certificate{}, ""},
	} {
		got, err := DeviceID(tc.cert)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("DeviceID(CN %q, URIs %v, EKU %v) = %q, %v; want %q", tc.cert.Subject.CommonName, tc.cert.URIs, tc.cert.ExtKeyUsage, got, err, tc.want)
		}
	}
}
