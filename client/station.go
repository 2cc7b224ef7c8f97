package client

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/csv"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/fleetpki/fleetpki/internal/atomicfile"
	"github.com/fleetpki/fleetpki/pki"
)

// A station enrolls devices and leaves each device's files in a directory:
// device.key (0600, written before anything is sent), device.crt,
// chain.pem (issuing CA first) and root.pem.

// NewDeviceKey makes a P-256 key, writes it to dir/device.key (0600) before
// anything is sent, and returns it with its CSR (PEM).
func NewDeviceKey(dir string) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("device key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("device key: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, "device.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, nil, err
	}
	csr, err := csrFor(key)
	return key, csr, err
}

func csrFor(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// WriteDeviceFiles writes the enrollment answer and the root into dir.
func WriteDeviceFiles(dir string, resp *EnrollResponse, root *x509.Certificate) error {
	files := map[string][]byte{"device.crt": []byte(resp.Certificate), "chain.pem": []byte(resp.Chain)}
	if root != nil {
		files["root.pem"] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	}
	for name, b := range files {
		if err := atomicfile.Write(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// BatchOptions configures EnrollBatch.
type BatchOptions struct {
	// CSV is the batch file: a header "device_id[,metadata keys…]" and one
	// device per line.
	CSV string
	// Out gets one sub-directory per device and results.csv.
	Out        string
	Credential string
	Profile    string
	// Metadata is used for devices whose line carries none.
	Metadata map[string]string
	Parallel int
	// Progress receives a progress line (may be nil).
	Progress io.Writer
}

// EnrollBatch enrolls every device of the CSV and returns how many are
// enrolled in all (this run and earlier ones). Before a device's request is
// sent, its key and idempotency key are on disk; after it succeeds, a line
// goes to results.csv. A re-run skips the devices in results.csv and sends
// the others with their saved keys, so the server answers a request it has
// already served with the same certificate instead of issuing again.
func (cl *Client) EnrollBatch(ctx context.Context, o BatchOptions) (int, error) {
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	rows, err := readBatch(o.CSV)
	if err != nil {
		return 0, err
	}
	if o.Parallel < 1 {
		o.Parallel = 1
	}
	if err := os.MkdirAll(o.Out, 0o700); err != nil {
		return 0, fmt.Errorf("--out: %w", err)
	}
	resultsPath := filepath.Join(o.Out, "results.csv")
	done, err := readResults(resultsPath)
	if err != nil {
		return 0, err
	}
	results, err := os.OpenFile(resultsPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, fmt.Errorf("results file: %w", err)
	}
	defer results.Close()

	var (
		mu       sync.Mutex
		finished = len(done)
		failed   []string
	)
	todo := make(chan batchRow)
	var wg sync.WaitGroup
	for range o.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for row := range todo {
				serial, err := cl.enrollOne(ctx, o, row)
				mu.Lock()
				if err != nil {
					failed = append(failed, row.id)
					fmt.Fprintf(progress, "\n%s: %v\n", row.id, err)
				} else {
					// One write per line, then sync: a line is either all there or absent.
					if _, werr := fmt.Fprintf(results, "%s,%s,enrolled\n", row.id, serial); werr == nil {
						_ = results.Sync()
					}
					finished++
				}
				fmt.Fprintf(progress, "\renrolled %d/%d", finished, len(rows))
				mu.Unlock()
			}
		}()
	}
	for _, row := range rows {
		if done[row.id] {
			continue
		}
		select {
		case todo <- row:
		case <-ctx.Done():
		}
	}
	close(todo)
	wg.Wait()
	fmt.Fprintln(progress)
	if len(failed) > 0 {
		return finished, fmt.Errorf("enroll: %d of %d devices failed (re-run to retry them): %s", len(failed), len(rows), strings.Join(failed[:min(5, len(failed))], ", "))
	}
	return finished, ctx.Err()
}

type batchRow struct {
	id   string
	meta map[string]string
}

func (cl *Client) enrollOne(ctx context.Context, o BatchOptions, row batchRow) (string, error) {
	dir := filepath.Join(o.Out, row.id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	// The key, the CSR and the idempotency key are saved before the request
	// is sent, and reused as they are: the server recognises a retry only if
	// the body is byte for byte the same (a new CSR signature would differ).
	idemFile, csrFile := filepath.Join(dir, "idempotency-key"), filepath.Join(dir, "device.csr")
	idem, err := os.ReadFile(idemFile)
	var csr []byte
	if err == nil {
		csr, err = os.ReadFile(csrFile)
	}
	if err != nil {
		// A fresh device, or one interrupted before its files were all
		// saved (then nothing was sent for it): start anew.
		if _, csr, err = NewDeviceKey(dir); err != nil {
			return "", err
		}
		if err := atomicfile.Write(csrFile, csr, 0o644); err != nil {
			return "", err
		}
		idem = []byte(NewIdempotencyKey())
		if err := atomicfile.Write(idemFile, idem, 0o600); err != nil {
			return "", err
		}
	}
	meta := nonEmpty(row.meta)
	if meta == nil {
		meta = nonEmpty(o.Metadata)
	}
	resp, err := cl.Enroll(ctx, o.Credential, EnrollRequest{DeviceID: row.id, CSR: string(csr), Profile: o.Profile, Metadata: meta},
		strings.TrimSpace(string(idem)))
	if err != nil {
		return "", err
	}
	if err := WriteDeviceFiles(dir, resp, cl.Root()); err != nil {
		return "", err
	}
	return resp.Serial, nil
}

// readBatch reads the CSV: a header whose first column is device_id and
// whose other columns are metadata keys.
func readBatch(path string) ([]batchRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--batch: %w", err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("--batch %s: %w", path, err)
	}
	if len(recs) == 0 || strings.TrimSpace(recs[0][0]) != "device_id" {
		return nil, fmt.Errorf("--batch %s: the first line must be a header starting with device_id", path)
	}
	header := recs[0]
	seen := map[string]bool{}
	var rows []batchRow
	for i, r := range recs[1:] {
		id := strings.TrimSpace(r[0])
		if err := pki.ValidateDeviceID(id); err != nil {
			return nil, fmt.Errorf("--batch %s line %d: %s", path, i+2, pki.Message(err))
		}
		if seen[id] {
			return nil, fmt.Errorf("--batch %s line %d: device %q appears twice", path, i+2, id)
		}
		seen[id] = true
		row := batchRow{id: id, meta: map[string]string{}}
		for j := 1; j < len(r) && j < len(header); j++ {
			if v := strings.TrimSpace(r[j]); v != "" {
				row.meta[strings.TrimSpace(header[j])] = v
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// readResults returns the devices recorded as enrolled; a torn last line
// (from a kill mid-write) does not count.
func readResults(path string) (map[string]bool, error) {
	done := map[string]bool{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return done, nil
	}
	if err != nil {
		return nil, fmt.Errorf("results file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), ",")
		if len(parts) == 3 && parts[2] == "enrolled" {
			done[parts[0]] = true
		}
	}
	return done, sc.Err()
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
