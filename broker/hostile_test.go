package broker_test

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/broker"
	"github.com/fleetpki/fleetpki/pki"
)

// The hostile-device suite: what a device with a valid certificate tries
// against the broker's topic boundary, with Debian's mosquitto clients.

// watchRules let every device read the others' status topics, so that a
// watcher can see what a will would deliver.
func watchRules(c *broker.Config) {
	c.Rules = append(broker.DefaultRules(), broker.Rule{Subscribe: true, Filter: "devices/+/status"})
}

// mosq runs a mosquitto client as d with args, bounded by timeout.
func (e *env) mosq(t *testing.T, tool string, d device, timeout time.Duration, args ...string) *exec.Cmd {
	t.Helper()
	host, port, _ := net.SplitHostPort(e.addr)
	all := append([]string{"-h", host, "-p", port, "--cafile", filepath.Join(e.dir, "root.pem"),
		"--cert", d.certFile, "--key", d.keyFile, "-i", d.id}, args...)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return exec.CommandContext(ctx, mosquittoTool(t, tool), all...)
}

// watcher subscribes as d to devices/+/status and returns what it received
// when stopped.
func (e *env) watcher(t *testing.T, d device) (stop func() string) {
	t.Helper()
	cmd := e.mosq(t, "mosquitto_sub", d, 30*time.Second, "-t", "devices/+/status", "-v", "-q", "1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	before := e.metric(t, "fleetpki_mqtt_connected_clients")
	waitFor(t, func() bool { return e.metric(t, "fleetpki_mqtt_connected_clients") >= before+1 || before > 0 })
	time.Sleep(300 * time.Millisecond) // the SUBSCRIBE follows the CONNACK
	return func() string {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return out.String()
	}
}

// A will aimed at another device's subtree is refused at CONNECT with "not
// authorized" and never delivered; a will on the device's own subtree is
// accepted.
func TestWillOutsideACLRefused(t *testing.T) {
	e := newEnv(t, watchRules)
	attacker, victim := e.device(t, "att-1"), e.device(t, "vic-1")
	stop := e.watcher(t, victim)
	cmd := e.mosq(t, "mosquitto_pub", attacker, 10*time.Second, "-t", "devices/att-1/temp", "-m", "1",
		"--will-topic", "devices/vic-1/status", "--will-payload", "forged", "--will-retain", "--will-qos", "1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("a CONNECT with a will on another device's topic was admitted:\n%s", out)
	}
	if !strings.Contains(strings.ToLower(string(out)), "not authori") {
		t.Errorf("mosquitto_pub said %q, want a not-authorized refusal", out)
	}
	waitFor(t, func() bool { return e.metric(t, "fleetpki_mqtt_refused_total", "will_acl") >= 1 })
	time.Sleep(300 * time.Millisecond)
	if got := stop(); strings.Contains(got, "forged") {
		t.Fatalf("the forged will was delivered: %q", got)
	}
	// Its own status topic is allowed.
	own := e.mosq(t, "mosquitto_pub", attacker, 10*time.Second, "-t", "devices/att-1/temp", "-m", "1",
		"--will-topic", "devices/att-1/status", "--will-payload", "gone")
	if out, err := own.CombinedOutput(); err != nil {
		t.Fatalf("a will on the device's own topic was refused: %v\n%s", err, out)
	}
}

// A device cut off because its certificate was revoked publishes no will
// (neither to subscribers nor as a retained message); a device that merely
// drops its connection does, so the check can fail.
func TestRevokedSessionPublishesNoWill(t *testing.T) {
	e := newEnv(t, watchRules)
	watch := e.device(t, "watch-1")
	dropped, revoked := e.device(t, "drop-1"), e.device(t, "rev-1")
	stop := e.watcher(t, watch)

	start := func(d device) *exec.Cmd {
		cmd := e.mosq(t, "mosquitto_sub", d, 30*time.Second, "-t", "devices/"+d.id+"/cmd", "-k", "5",
			"--will-topic", "devices/"+d.id+"/status", "--will-payload", "will-of-"+d.id, "--will-retain", "--will-qos", "1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	n := e.metric(t, "fleetpki_mqtt_connected_clients")
	dc, rc := start(dropped), start(revoked)
	waitFor(t, func() bool { return e.metric(t, "fleetpki_mqtt_connected_clients") >= n+2 })

	// The control: killed without DISCONNECT, its will goes out.
	_ = dc.Process.Kill()
	_ = dc.Wait()
	// The revoked one: the broker ends its session.
	if _, err := e.ca.Revoke(t.Context(), revoked.serial, pki.ReasonKeyCompromise, pki.Actor{Name: "test"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return e.metric(t, "fleetpki_mqtt_revoked_disconnects_total") >= 1 })
	_ = rc.Wait()
	time.Sleep(500 * time.Millisecond)
	got := stop()
	if !strings.Contains(got, "will-of-drop-1") {
		t.Fatalf("the control's will was not delivered (the test cannot see wills): %q", got)
	}
	if strings.Contains(got, "will-of-rev-1") {
		t.Fatalf("the revoked device's will was delivered: %q", got)
	}
	// Nor is it retained: a new subscriber gets the control's retained will only.
	late := e.mosq(t, "mosquitto_sub", watch, 10*time.Second, "-t", "devices/+/status", "-v", "-W", "2")
	out, _ := late.CombinedOutput()
	if strings.Contains(string(out), "will-of-rev-1") || !strings.Contains(string(out), "will-of-drop-1") {
		t.Fatalf("retained status messages after the revocation: %q", out)
	}
}

// A device keeps at most MaxRetained retained messages and
// MaxRetainedBytes bytes; past them its retained PUBLISH is refused, and a
// CONNECT with a retained will larger than the byte quota is refused.
func TestRetainedQuota(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) {
		watchRules(c)
		c.MaxRetained, c.MaxRetainedBytes = 3, 1000
	})
	d, watch := e.device(t, "ret-1"), e.device(t, "watch-2")
	for i := range 5 {
		// MQTT 5 with QoS 1, so that a refusal is acknowledged with its reason.
		cmd := e.mosq(t, "mosquitto_pub", d, 10*time.Second, "-V", "5", "-r", "-q", "1", "-t", "devices/ret-1/t"+strconv.Itoa(i), "-m", "v"+strconv.Itoa(i))
		out, err := cmd.CombinedOutput()
		if i < 3 && err != nil {
			t.Fatalf("retained message %d within the quota: %v %s", i, err, out)
		}
		// mosquitto_pub warns and exits 0 on a refused PUBLISH.
		if i >= 3 && !strings.Contains(strings.ToLower(string(out)), "quota exceeded") {
			t.Errorf("retained message %d past the quota: %q, want a quota-exceeded refusal", i, out)
		}
	}
	// Replacing a retained message it already owns is within the quota.
	if out, err := e.mosq(t, "mosquitto_pub", d, 10*time.Second, "-r", "-q", "1", "-t", "devices/ret-1/t0", "-m", "v0b").CombinedOutput(); err != nil {
		t.Fatalf("replacing an owned retained message: %v %s", err, out)
	}
	// A large payload is over the byte quota.
	big := strings.Repeat("x", 1200)
	_, _ = e.mosq(t, "mosquitto_pub", d, 10*time.Second, "-r", "-q", "0", "-t", "devices/ret-1/t1", "-m", big).CombinedOutput()
	// Reading the retained messages back (the default ACL lets a device read
	// its own subtree).
	out, _ := e.mosq(t, "mosquitto_sub", d, 10*time.Second, "-t", "devices/ret-1/#", "-v", "-C", "3", "-W", "3").Output()
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	slices.Sort(got)
	want := []string{"devices/ret-1/t0 v0b", "devices/ret-1/t1 v1", "devices/ret-1/t2 v2"}
	if !slices.Equal(got, want) {
		t.Fatalf("retained messages = %q, want %q", got, want)
	}
	if n := e.metric(t, "fleetpki_mqtt_refused_total", "retained_quota"); n < 3 {
		t.Errorf("retained_quota refusals = %v, want ≥ 3", n)
	}
	// A retained will bigger than the byte quota: refused at CONNECT.
	cmd := e.mosq(t, "mosquitto_pub", watch, 10*time.Second, "-t", "devices/watch-2/x", "-m", "1",
		"--will-topic", "devices/watch-2/status", "--will-payload", big, "--will-retain")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("a CONNECT with a retained will over the byte quota was admitted: %s", out)
	}
}
