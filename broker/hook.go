package broker

import (
	"bytes"
	"errors"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/fleetpki/fleetpki/pki"
)

// hook ties MQTT sessions to certificates: the client id must be the
// certificate's device id, the ACL is per device (for PUBLISH, SUBSCRIBE
// and the will alike), retained messages are bounded per device, and
// sessions are recorded so that a revocation can end them. It is the only
// auth hook: mochi admits a client if ANY hook says yes, so none other may
// be added.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "fleetpki-certificate-identity" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect,
		mqtt.OnPublish, mqtt.OnRetainMessage}, []byte{b})
}

// errConnectRefused ends a CONNECT that OnConnect has answered itself.
var errConnectRefused = errors.New("connect refused")

// OnConnect checks the CONNECT packet's will before the session exists: a
// will is a PUBLISH the broker makes on the device's behalf later, so it
// must pass the same ACL now (mochi never asks the ACL about wills), and a
// retained will must fit the device's retained quota. A refusal is answered
// "not authorized" (v3 return code 5, v5 reason 0x87).
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if !pk.Connect.WillFlag {
		return nil
	}
	b := h.b
	id, err := clientDeviceID(cl)
	reason := "identity"
	if err == nil {
		reason = willRefusal(b.cfg.Rules, b.cfg.MaxRetainedBytes, id, pk.Connect)
	}
	if reason == "" {
		return nil
	}
	// The will was copied into the client at ParseConnect: drop it so that
	// nothing can publish it, whatever mochi does with the refused client.
	cl.Properties.Will = mqtt.Will{}
	b.metrics.refused.WithLabelValues(reason).Inc()
	b.log.Info("MQTT connection refused: its will is not allowed", "client_id", cl.ID, "device_id", id,
		"will_topic", pk.Connect.WillTopic, "reason", reason, "remote", cl.Net.Remote)
	code := packets.ErrNotAuthorized
	if cl.Properties.ProtocolVersion < 5 {
		// mochi maps only this code to v3's return code 5 "not authorized".
		code = packets.ErrBadUsernameOrPassword
	}
	_ = b.server.SendConnack(cl, code, false, nil)
	return errConnectRefused
}

// willRefusal says why a CONNECT's will is refused for deviceID ("" when
// it is allowed): its topic must pass the publish ACL like a PUBLISH, and a
// retained will must fit the device's retained bytes.
func willRefusal(rules []Rule, maxRetainedBytes int, deviceID string, c packets.ConnectParams) string {
	switch {
	case !c.WillFlag:
		return ""
	case !allowed(rules, deviceID, c.WillTopic, true):
		return "will_acl"
	case c.WillRetain && len(c.WillPayload) > maxRetainedBytes:
		return "retained_quota"
	}
	return ""
}

// OnConnectAuthenticate runs after the TLS handshake (so the certificate is
// verified and not revoked) and before CONNACK.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	b := h.b
	leaf := peerLeaf(cl)
	if leaf == nil {
		b.metrics.refused.WithLabelValues("no_certificate").Inc()
		return false
	}
	id, err := DeviceID(leaf)
	if err != nil {
		b.metrics.refused.WithLabelValues("identity").Inc()
		return false
	}
	if !b.cfg.AnyClientID && cl.ID != id {
		b.metrics.refused.WithLabelValues("identity").Inc()
		b.log.Info("MQTT connection refused: the client id is not the certificate's device id",
			"client_id", cl.ID, "device_id", id, "remote", cl.Net.Remote)
		return false
	}
	serial := pki.NewSerial(leaf.SerialNumber)
	if !b.register(serial, cl) {
		b.metrics.refused.WithLabelValues("revoked").Inc()
		return false
	}
	b.metrics.connections.Inc()
	return true
}

func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	id, err := clientDeviceID(cl)
	if err != nil {
		return false
	}
	if allowed(h.b.cfg.Rules, id, topic, write) {
		return true
	}
	h.b.metrics.refused.WithLabelValues("acl").Inc()
	return false
}

// OnPublish enforces the retained quota: a retained PUBLISH that would
// take the device past its count or bytes is refused (not published, not
// retained); MQTT 5 clients asking for an acknowledgement hear "quota
// exceeded".
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !pk.FixedHeader.Retain || len(pk.Payload) == 0 || cl.Net.Inline {
		return pk, nil
	}
	id, err := clientDeviceID(cl)
	if err != nil {
		return pk, packets.ErrRejectPacket
	}
	if h.b.retained.fits(id, pk.TopicName, len(pk.Payload)) {
		return pk, nil
	}
	h.b.metrics.refused.WithLabelValues("retained_quota").Inc()
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		return pk, packets.ErrQuotaExceeded
	}
	return pk, packets.ErrRejectPacket
}

// OnRetainMessage keeps the per-device account of retained messages, for
// PUBLISHes and wills alike (r is 1 when a message was stored, -1 when one
// was cleared).
func (h *hook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	id, err := clientDeviceID(cl)
	if err != nil {
		id = ""
	}
	if r > 0 {
		h.b.retained.stored(id, pk.TopicName, len(pk.Payload))
	} else {
		h.b.retained.cleared(pk.TopicName)
	}
}

func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	leaf := peerLeaf(cl)
	if leaf == nil {
		return
	}
	h.b.unregister(pki.NewSerial(leaf.SerialNumber), cl)
}

// clientDeviceID is the device id of a connected client's certificate.
func clientDeviceID(cl *mqtt.Client) (string, error) {
	leaf := peerLeaf(cl)
	if leaf == nil {
		return "", errors.New("no client certificate")
	}
	return DeviceID(leaf)
}
