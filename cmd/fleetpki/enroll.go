package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fleetpki/fleetpki/client"
	"github.com/fleetpki/fleetpki/internal/config"
)

// envCredential carries the enrollment credential, so that it need not
// appear in the process list.
const envCredential = "FLEETPKI_CREDENTIAL"

type enrollOptions struct {
	server, fingerprint, credential, deviceID, out, profile, csrFile, batch string
	parallel                                                                int
	metadata                                                                config.MapValue
}

// enroll is the factory station's command: it makes the device's key in
// process (or takes a CSR made elsewhere), enrolls it, and writes the key,
// certificate, chain and root. --batch enrolls a CSV of device ids and can be
// re-run after an interruption without issuing anything twice.
func (c *cli) enroll(ctx context.Context, args []string) error {
	o := enrollOptions{metadata: config.MapValue{}}
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
		n, err := cl.EnrollBatch(ctx, client.BatchOptions{CSV: o.batch, Out: o.out, Credential: o.credential, Profile: o.profile,
			Metadata: o.metadata, Parallel: o.parallel, Progress: c.stderr})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%d devices enrolled; results in %s\n", n, filepath.Join(o.out, "results.csv"))
		return nil
	}
	if err := os.MkdirAll(o.out, 0o700); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	var csrPEM []byte
	if o.csrFile != "" {
		if csrPEM, err = os.ReadFile(o.csrFile); err != nil {
			return fmt.Errorf("--csr: %w", config.UnwrapPath(err))
		}
	} else if _, csrPEM, err = client.NewDeviceKey(o.out); err != nil {
		return err
	}
	resp, err := cl.Enroll(ctx, o.credential, client.EnrollRequest{DeviceID: o.deviceID, CSR: string(csrPEM), Profile: o.profile,
		Metadata: o.metadata}, client.NewIdempotencyKey())
	if err != nil {
		return err
	}
	if err := client.WriteDeviceFiles(o.out, resp, cl.Root()); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "enrolled %s: serial %s, valid until %s, files in %s\n", resp.DeviceID, resp.Serial, resp.NotAfter, o.out)
	fmt.Fprintln(c.stdout, resp.Serial)
	return nil
}
