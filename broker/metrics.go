package broker

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	connections        prometheus.Counter
	connected          prometheus.GaugeFunc
	refused            *prometheus.CounterVec
	checkSeconds       prometheus.Histogram
	revokedDisconnects prometheus.Counter
	eventToDisconnect  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, live func() float64) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetpki_mqtt_connections_total",
			Help: "MQTT connections admitted."}),
		connected: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleetpki_mqtt_connected_clients",
			Help: "MQTT sessions connected now."}, live),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetpki_mqtt_refused_total",
			Help: "MQTT connections and operations refused, by reason (revoked, unknown_ca, expired, acl, will_acl, retained_quota, check_failed, identity, no_certificate, handshake)."},
			[]string{"reason"}),
		checkSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fleetpki_mqtt_revocation_check_seconds",
			Help: "Time to establish a connecting certificate's revocation status.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		revokedDisconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetpki_mqtt_revoked_disconnects_total",
			Help: "Live MQTT sessions ended because their certificate was revoked."}),
		eventToDisconnect: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fleetpki_mqtt_revocation_to_disconnect_seconds",
			Help: "Time from a revocation event to the disconnection of the certificate's session.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
	}
	for _, c := range []prometheus.Collector{m.connections, m.connected, m.refused, m.checkSeconds, m.revokedDisconnects, m.eventToDisconnect} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("broker metrics: %w", err)
		}
	}
	for _, r := range []string{"revoked", "unknown_ca", "expired", "acl", "will_acl", "retained_quota", "check_failed", "identity", "no_certificate", "handshake"} {
		m.refused.WithLabelValues(r)
	}
	return m, nil
}
