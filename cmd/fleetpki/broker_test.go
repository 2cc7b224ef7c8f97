package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

var mqttRE = regexp.MustCompile(`msg=listening listener=mqtt addr=(\S+)`)

func (s *server) mqttAddr(t *testing.T) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := mqttRE.FindStringSubmatch(s.log.String()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("serve did not log its MQTT listener\n%s", s.log.String())
	return ""
}

// TestBundledBrokerRevocation is the product's promise end to end: a device
// enrolled by the station client publishes with mosquitto_pub, stays
// subscribed with paho, and is disconnected within a second of its
// revocation through the REST API (by curl); it cannot reconnect.
func TestBundledBrokerRevocation(t *testing.T) {
	e := newEnrollEnv(t)
	out := filepath.Join(t.TempDir(), "dev-7")
	if r := e.enroll(t, "--device-id", "dev-7", "--out", out); r.code != 0 {
		t.Fatalf("enroll: %s", r.stderr)
	}
	addr := e.srv.mqttAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	file := func(n string) string { return filepath.Join(out, n) }
	pub := func() ([]byte, error) {
		return exec.Command("mosquitto_pub", "-h", host, "-p", port, "--cafile", file("root.pem"), "--cert", file("device.crt"),
			"--key", file("device.key"), "-i", "dev-7", "-q", "1", "-t", "devices/dev-7/temp", "-m", "20.5").CombinedOutput()
	}
	if o, err := pub(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, o)
	}

	kp, err := tls.LoadX509KeyPair(file("device.crt"), file("device.key"))
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := os.ReadFile(file("root.pem"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	lost := make(chan time.Time, 1)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + addr).SetClientID("dev-7").SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}).
		SetConnectionLostHandler(func(paho.Client, error) { lost <- time.Now() }))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("paho connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.Subscribe("devices/dev-7/cmd", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	crt, _ := os.ReadFile(file("device.crt"))
	serial := certSerial(t, crt)
	token := mustRun(t, "", "user", "token", "--data-dir", e.data, "--name", "admin").lastLine()
	start := time.Now()
	resp, err := exec.Command("curl", "-sS", "--cacert", file("root.pem"), "-H", "Authorization: Bearer "+token,
		"-H", "Content-Type: application/json", "--data-binary", `{"reason":"keyCompromise"}`,
		"https://"+e.srv.httpsAddr+"/api/v1/certificates/"+serial+"/revoke").CombinedOutput()
	var rec struct{ Status string }
	if err != nil || json.Unmarshal(resp, &rec) != nil || rec.Status != "revoked" {
		t.Fatalf("revoke: %v %s", err, resp)
	}
	select {
	case at := <-lost:
		d := at.Sub(start)
		t.Logf("the subscribed device was disconnected %v after the revoke request was sent", d)
		if d > time.Second {
			t.Fatalf("disconnected after %v, want < 1 s", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the revoked device is still connected 3 s after its revocation")
	}
	if o, err := pub(); err == nil {
		t.Fatalf("mosquitto_pub with the revoked certificate was admitted:\n%s", o)
	}
	if m := e.srv.metrics(t); !strings.Contains(m, "fleetpki_mqtt_revoked_disconnects_total 1") {
		t.Errorf("metrics lack the revoked disconnect")
	}
	e.srv.stop(t)
}

// certSerial returns a PEM certificate's serial as the API names it (lower-case hex).
func certSerial(t *testing.T, pemBytes []byte) string {
	t.Helper()
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatal("not PEM")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Text(16)
}

func (s *server) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(s.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
