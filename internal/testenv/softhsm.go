package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
)

// SoftHSMModule is Debian's SoftHSM2 PKCS#11 module.
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// HSM is a private SoftHSM2 token of one test.
type HSM struct {
	// URI is the KMS URI of the token, its PIN in a pin-source file.
	URI string
	// Conf is the SoftHSM2 configuration; SOFTHSM2_CONF points at it for
	// this process (and so for the children it starts).
	Conf string
	// TokenDir holds the process's tokens: moving it away pulls them.
	TokenDir string
	PIN      string
	Label    string
}

// softHSMConf is the process's SoftHSM2 configuration: the library reads
// it once, when first loaded, so every token of a process shares one token
// directory (each test gets its own token in it). It lives in the system's
// temporary directory, a few kilobytes per test process.
var softHSMConf = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "fleetpki-softhsm-")
	if err != nil {
		return "", err
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	return conf, os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600)
})

// SoftHSM makes a fresh token for t, or skips without SoftHSM2 (fails in
// CI, where it must be installed). SOFTHSM2_CONF is set for the process,
// and so for the children it starts. The library finds tokens when it is
// initialised, which crypto11 does while no KMS is open: a test must close
// every hierarchy it loads before the next makes a token.
func SoftHSM(t testing.TB) *HSM {
	t.Helper()
	if _, err := os.Stat(SoftHSMModule); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("SoftHSM2 is required in CI (apt-get install softhsm2): %v", err)
		}
		t.Skipf("SoftHSM2 is not installed: %v", err)
	}
	conf, err := softHSMConf()
	if err != nil {
		t.Fatal(err)
	}
	os.Setenv("SOFTHSM2_CONF", conf) // process-wide on purpose, see softHSMConf
	label := make([]byte, 6)
	_, _ = rand.Read(label)
	h := &HSM{Conf: conf, TokenDir: filepath.Join(filepath.Dir(conf), "tokens"), PIN: "4711-fleet", Label: "t" + hex.EncodeToString(label)}
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(h.PIN), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", h.Label, "--pin", h.PIN, "--so-pin", "so-"+h.PIN).CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	// Tokens are not deleted: the loaded library would trip over a token
	// that vanished. They go with the process's temporary directory.
	h.URI = "pkcs11:module-path=" + SoftHSMModule + ";token=" + h.Label + "?pin-source=" + pinFile
	return h
}

// Pull takes the token away (as unplugging would) until Plug.
func (h *HSM) Pull(t testing.TB) {
	t.Helper()
	if err := os.Rename(h.TokenDir, h.TokenDir+".pulled"); err != nil {
		t.Fatal(err)
	}
}

// Plug puts a pulled token back.
func (h *HSM) Plug(t testing.TB) {
	t.Helper()
	if err := os.Rename(h.TokenDir+".pulled", h.TokenDir); err != nil {
		t.Fatal(err)
	}
}

// PrivateKeys lists, with pkcs11-tool, the token's private keys as
// "label: access flags" lines.
func (h *HSM) PrivateKeys(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("pkcs11-tool", "--module", SoftHSMModule, "--token-label", h.Label, "--login", "--pin", h.PIN,
		"--list-objects", "--type", "privkey").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool --list-objects: %v\n%s", err, out)
	}
	var keys []string
	var label string
	for _, line := range bytes.Split(out, []byte("\n")) {
		l := string(bytes.TrimSpace(line))
		if m := regexp.MustCompile(`^label:\s+(.*)$`).FindStringSubmatch(l); m != nil {
			label = m[1]
		}
		if m := regexp.MustCompile(`^Access:\s+(.*)$`).FindStringSubmatch(l); m != nil {
			keys = append(keys, label+": "+m[1])
		}
	}
	return keys
}

// Private-key structures, as they start in DER: PKCS#8 with an EC or RSA
// algorithm (version 0 then the AlgorithmIdentifier), and SEC 1 (version 1
// then a 32- or 48-byte octet string). Certificates and public keys never
// hold these sequences.
var privateKeyMarkers = [][]byte{
	mustHex("020100301306072a8648ce3d0201"),         // PKCS#8, id-ecPublicKey
	mustHex("020100300d06092a864886f70d0101010500"), // PKCS#8, rsaEncryption
	mustHex("0201010420"),                           // SEC 1, P-256 scalar
	mustHex("0201010430"),                           // SEC 1, P-384 scalar
	[]byte("PRIVATE KEY-----"),                      // any PEM private key
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// FindPrivateKeys returns the files under dir holding a private-key
// structure (PEM or DER, also hex-encoded as a database dump would be).
func FindPrivateKeys(t testing.TB, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if HasPrivateKey(b) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// HasPrivateKey reports whether b holds a private-key structure, raw or
// hex-encoded.
func HasPrivateKey(b []byte) bool {
	lower := bytes.ToLower(b)
	for _, m := range privateKeyMarkers {
		if bytes.Contains(b, m) || bytes.Contains(lower, []byte(hex.EncodeToString(m))) {
			return true
		}
	}
	return false
}
