package broker

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"
)

// FuzzConnect feeds arbitrary CONNECT packet bodies (MQTT 3.1.1 and 5:
// wills, will properties, client ids) through mochi's decoder and the
// broker's CONNECT checks. Whatever a device sends: no panic, and a will
// the checks let through is a plain topic inside the device's own subtree
// under the default ACL, within the retained quota when retained.
func FuzzConnect(f *testing.F) {
	seed := func(v byte, clientID, willTopic string, willRetain bool, payload string) {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: v,
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: clientID, Keepalive: 30, Clean: true,
				WillFlag: willTopic != "", WillTopic: willTopic, WillPayload: []byte(payload), WillRetain: willRetain, WillQos: 1}}
		if v == 5 {
			pk.Connect.WillProperties = packets.Properties{WillDelayInterval: 10, User: []packets.UserProperty{{Key: "k", Val: "v"}}}
		}
		var buf bytes.Buffer
		if err := pk.ConnectEncode(&buf); err == nil && buf.Len() > 2 {
			f.Add(buf.Bytes()[2:], v) // the body after the fixed header (short packets: one length byte)
		}
	}
	seed(4, "dev-1", "devices/dev-1/status", true, "gone")
	seed(4, "dev-1", "devices/other/cmd", true, "x")
	seed(5, "dev-1", "devices/dev-1/#", false, "x")
	seed(5, "", "$SYS/broker", false, "")
	seed(4, "dev-1", "", false, "")
	rules := DefaultRules()
	f.Fuzz(func(t *testing.T, body []byte, version byte) {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect, Remaining: len(body)}, ProtocolVersion: version}
		if err := pk.ConnectDecode(body); err != nil {
			return // mochi refuses it before any hook runs
		}
		if code := pk.ConnectValidate(); code != packets.CodeSuccess {
			return
		}
		reason := willRefusal(rules, 1000, "dev-1", pk.Connect)
		if reason != "" || !pk.Connect.WillFlag {
			return
		}
		topic := pk.Connect.WillTopic
		if strings.ContainsAny(topic, "+#") || !utf8.ValidString(topic) ||
			(topic != "devices/dev-1" && !strings.HasPrefix(topic, "devices/dev-1/")) {
			t.Fatalf("a will on %q passed the checks for dev-1", topic)
		}
		if pk.Connect.WillRetain && len(pk.Connect.WillPayload) > 1000 {
			t.Fatalf("a retained will of %d bytes passed a 1000-byte quota", len(pk.Connect.WillPayload))
		}
	})
}
