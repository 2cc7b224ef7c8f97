package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binaryPath is the fleetpki binary that TestMain builds; the tests run it
// as users do, through exec. It is set once, before any test runs.
var binaryPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fleetpki-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binaryPath = filepath.Join(dir, "fleetpki")
	build := exec.Command("go", "build", "-o", binaryPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build fleetpki:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// childEnv is the test process's environment without FLEETPKI_* settings, so
// that a developer's or CI's own configuration cannot change what a test runs.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLEETPKI_") {
			env = append(env, kv)
		}
	}
	return env
}

// result is what a finished command printed and how it exited.
type result struct {
	code   int
	stdout string
	stderr string
}

// lastLine returns the last line of standard output.
func (r result) lastLine() string {
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	return lines[len(lines)-1]
}

// runCLI runs fleetpki with args and stdin to completion.
func runCLI(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binaryPath, args...)
	cmd.Env = childEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run fleetpki %v: %v", args, err)
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// mustRun runs fleetpki and fails the test unless it exits 0.
func mustRun(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	r := runCLI(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("fleetpki %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// server is a running `fleetpki serve`.
type server struct {
	cmd         *exec.Cmd
	log         *lockedBuffer
	addr        string // host:port of the HTTP listener
	httpsAddr   string // host:port of the HTTPS listener
	fingerprint string // root_sha256 as logged
	exited      chan struct{}
	waitErr     error // valid once exited is closed
}

var (
	listeningRE = regexp.MustCompile(`msg=listening listener=http addr=(\S+)`)
	httpsRE     = regexp.MustCompile(`msg=listening listener=https addr=(\S+)`)
	rootFPRE    = regexp.MustCompile(`root_sha256=([0-9a-f]{64})`)
)

// startServe starts `fleetpki serve` with args and waits until it logs its
// HTTP and HTTPS addresses (both on free ports unless args say otherwise).
// The process is killed at the end of the test if still running.
func startServe(t testing.TB, args ...string) *server {
	t.Helper()
	return startServeWrapped(t, nil, args...)
}

// startServeWrapped is startServe run through wrapper (e.g. a shell that
// lowers a limit and then execs the binary, named in "$0").
func startServeWrapped(t testing.TB, wrapper []string, args ...string) *server {
	t.Helper()
	args = append([]string{"serve", "--log-format", "text", "--https-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0"}, args...)
	cmd := exec.Command(binaryPath, args...)
	if len(wrapper) > 0 {
		cmd = exec.Command(wrapper[0], append(append(wrapper[1:], binaryPath), args...)...)
	}
	cmd.Env = childEnv()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, log: &lockedBuffer{}, exited: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			s.log.writeLine(sc.Text())
			if m := httpsRE.FindStringSubmatch(sc.Text()); m != nil { // logged after the HTTP line
				select {
				case ready <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pipe)
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // harmless when it has exited
		<-s.exited
	})
	select {
	case s.httpsAddr = <-ready:
		s.addr = listeningRE.FindStringSubmatch(s.log.String())[1]
	case <-s.exited:
		t.Fatalf("serve exited before listening: %v\n%s", s.waitErr, s.log.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("serve did not start within 90 s\n%s", s.log.String())
	}
	m := rootFPRE.FindStringSubmatch(s.log.String())
	if m == nil {
		t.Fatalf("serve did not log root_sha256\n%s", s.log.String())
	}
	s.fingerprint = m[1]
	return s
}

// stop sends SIGTERM and requires a clean exit (status 0) within 15 s.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
		if s.waitErr != nil {
			t.Fatalf("serve did not exit cleanly after SIGTERM: %v\n%s", s.waitErr, s.log.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not exit within 15 s of SIGTERM\n%s", s.log.String())
	}
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

// lockedBuffer collects a child's log lines while the test reads them.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) writeLine(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.WriteString(line + "\n")
}

// Write makes it a child's Stdout or Stderr.
func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
