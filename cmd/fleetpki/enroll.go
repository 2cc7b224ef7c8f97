package main

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
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/fleetpki/fleetpki/client"
	"github.com/fleetpki/fleetpki/pki"
)

// envCredential carries the enrollment credential, so that it need not
// appear in the process list.
const envCredential = "FLEETPKI_CREDENTIAL"

// metadataFlag collects repeated --metadata key=value.
type metadataFlag map[string]string

func (m metadataFlag) String() string { return fmt.Sprint(map[string]string(m)) }
func (m metadataFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return errors.New("want key=value")
	}
	m[k] = val
	return nil
}

type enrollOptions struct {
	server, fingerprint, credential, deviceID, out, profile, csrFile, batch string
	parallel                                                                int
	metadata                                                                metadataFlag
}

// enroll is the factory station's command: it makes the device's key in
// process (or takes a CSR made elsewhere), enrolls it, and writes the key,
// certificate, chain and root. --batch enrolls a CSV of device ids and can be
// re-run after an interruption without issuing anything twice.
func (c *cli) enroll(ctx context.Context, args []string) error {
	o := enrollOptions{metadata: metadataFlag{}}
	fs := flag.NewFlagSet("fleetpki enroll", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.server, "server", "", "HTTPS URL of fleetpki (e.g. https://pki.example:8443)")
	fs.StringVar(&o.fingerprint, "fingerprint", "", "SHA-256 fingerprint of the CA root, as serve prints it")
	fs.StringVar(&o.credential, "credential", "", "enrollment credential secret (better: env "+envCredential+")")
	fs.StringVar(&o.deviceID, "device-id", "", "device id to enroll")
	fs.StringVar(&o.out, "out", ".", "directory for device.key, device.crt, chain.pem, root.pem (batch: one sub-directory per device)")
	fs.StringVar(&o.profile, "profile", "", "certificate profile (default: the server's default, device)")
	fs.StringVar(&o.csrFile, "csr", "", "enroll this PEM CSR (e.g. from a secure element) instead of making a key")
	fs.StringVar(&o.batch, "batch", "", "CSV file: a header 'device_id[,metadata keys…]' and one device per line")
	fs.IntVar(&o.parallel, "parallel", 4, "concurrent enrollments with --batch")
	fs.Var(o.metadata, "metadata", "key=value stored with the device (repeatable)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if o.credential == "" {
		o.credential, _ = c.lookupEnv(envCredential)
	}
	switch {
	case o.server == "" || o.fingerprint == "" || o.credential == "":
		return usageError{errors.New("enroll: --server, --fingerprint and --credential (or " + envCredential + ") are required")}
	case o.batch == "" && o.deviceID == "":
		return usageError{errors.New("enroll: --device-id or --batch is required")}
	case o.batch != "" && (o.deviceID != "" || o.csrFile != ""):
		return usageError{errors.New("enroll: --batch takes its device ids from the file; drop --device-id and --csr")}
	case o.parallel < 1 || o.parallel > 64:
		return usageError{errors.New("enroll: --parallel must be from 1 to 64")}
	}
	cl, err := client.New(o.server, o.fingerprint)
	if err != nil {
		return err
	}
	if o.batch != "" {
		return c.enrollBatch(ctx, cl, o)
	}
	if err := os.MkdirAll(o.out, 0o700); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	var csrPEM []byte
	if o.csrFile != "" {
		if csrPEM, err = os.ReadFile(o.csrFile); err != nil {
			return fmt.Errorf("--csr: %w", unwrapPath(err))
		}
	} else if _, csrPEM, err = newDeviceKey(o.out); err != nil {
		return err
	}
	resp, err := cl.Enroll(ctx, o.credential, client.EnrollRequest{DeviceID: o.deviceID, CSR: string(csrPEM), Profile: o.profile,
		Metadata: nonEmpty(o.metadata)}, client.NewIdempotencyKey())
	if err != nil {
		return err
	}
	if err := writeDeviceFiles(o.out, resp, cl.Root()); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "enrolled %s: serial %s, valid until %s, files in %s\n", resp.DeviceID, resp.Serial, resp.NotAfter, o.out)
	fmt.Fprintln(c.stdout, resp.Serial)
	return nil
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// newDeviceKey makes a P-256 key, writes it to dir/device.key (0600) before
// anything is sent, and returns it with its CSR (PEM).
func newDeviceKey(dir string) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("device key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("device key: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, "device.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
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

func writeDeviceFiles(dir string, resp *client.EnrollResponse, root *x509.Certificate) error {
	files := map[string][]byte{"device.crt": []byte(resp.Certificate), "chain.pem": []byte(resp.Chain)}
	if root != nil {
		files["root.pem"] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	}
	for name, b := range files {
		if err := writeAtomic(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// enrollBatch enrolls every device of the CSV. Before a device's request is
// sent, its key and idempotency key are on disk; after it succeeds, a line
// goes to results.csv. A re-run skips the devices in results.csv and sends
// the others with their saved keys, so the server answers a request it has
// already served with the same certificate instead of issuing again.
func (c *cli) enrollBatch(ctx context.Context, cl *client.Client, o enrollOptions) error {
	rows, err := readBatch(o.batch)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o700); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	resultsPath := filepath.Join(o.out, "results.csv")
	done, err := readResults(resultsPath)
	if err != nil {
		return err
	}
	results, err := os.OpenFile(resultsPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("results file: %w", err)
	}
	defer results.Close()

	var (
		mu       sync.Mutex
		finished = len(done)
		failed   []string
	)
	todo := make(chan batchRow)
	var wg sync.WaitGroup
	for range o.parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for row := range todo {
				serial, err := c.enrollOne(ctx, cl, o, row)
				mu.Lock()
				if err != nil {
					failed = append(failed, row.id)
					fmt.Fprintf(c.stderr, "\n%s: %v\n", row.id, err)
				} else {
					// One write per line, then sync: a line is either all there or absent.
					if _, werr := fmt.Fprintf(results, "%s,%s,enrolled\n", row.id, serial); werr == nil {
						_ = results.Sync()
					}
					finished++
				}
				fmt.Fprintf(c.stderr, "\renrolled %d/%d", finished, len(rows))
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
	fmt.Fprintln(c.stderr)
	if len(failed) > 0 {
		return fmt.Errorf("enroll: %d of %d devices failed (re-run to retry them): %s", len(failed), len(rows), strings.Join(failed[:min(5, len(failed))], ", "))
	}
	fmt.Fprintf(c.stdout, "%d devices enrolled; results in %s\n", len(rows), resultsPath)
	return ctx.Err()
}

type batchRow struct {
	id   string
	meta map[string]string
}

func (c *cli) enrollOne(ctx context.Context, cl *client.Client, o enrollOptions, row batchRow) (string, error) {
	dir := filepath.Join(o.out, row.id)
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
		if _, csr, err = newDeviceKey(dir); err != nil {
			return "", err
		}
		if err := writeAtomic(csrFile, csr, 0o644); err != nil {
			return "", err
		}
		idem = []byte(client.NewIdempotencyKey())
		if err := writeAtomic(idemFile, idem, 0o600); err != nil {
			return "", err
		}
	}
	meta := nonEmpty(row.meta)
	if meta == nil {
		meta = nonEmpty(o.metadata)
	}
	resp, err := cl.Enroll(ctx, o.credential, client.EnrollRequest{DeviceID: row.id, CSR: string(csr), Profile: o.profile, Metadata: meta},
		strings.TrimSpace(string(idem)))
	if err != nil {
		return "", err
	}
	if err := writeDeviceFiles(dir, resp, cl.Root()); err != nil {
		return "", err
	}
	return resp.Serial, nil
}

// readBatch reads the CSV: a header whose first column is device_id and
// whose other columns are metadata keys.
func readBatch(path string) ([]batchRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--batch: %w", unwrapPath(err))
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
