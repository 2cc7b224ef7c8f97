package broker

import (
	"bytes"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/fleetpki/fleetpki/pki"
)

// hook ties MQTT sessions to certificates: the client id must be the
// certificate's device id, the ACL is per device, and sessions are recorded
// so that a revocation can end them. It is the only auth hook: mochi admits
// a client if ANY hook says yes, so none other may be added.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "fleetpki-certificate-identity" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect}, []byte{b})
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
	leaf := peerLeaf(cl)
	if leaf == nil {
		return false
	}
	id, err := DeviceID(leaf)
	if err != nil {
		return false
	}
	if allowed(h.b.cfg.Rules, id, topic, write) {
		return true
	}
	h.b.metrics.refused.WithLabelValues("acl").Inc()
	return false
}

func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	leaf := peerLeaf(cl)
	if leaf == nil {
		return
	}
	h.b.unregister(pki.NewSerial(leaf.SerialNumber), cl)
}
