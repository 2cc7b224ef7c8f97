package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fleetpki/fleetpki/client"
	"github.com/fleetpki/fleetpki/internal/config"
	"github.com/fleetpki/fleetpki/internal/hook"
	"github.com/fleetpki/fleetpki/pki"
)

// envCredential carries the enrollment credential, so that it need not
// appear in the process list.
const envCredential = "FLEETPKI_CREDENTIAL"

type enrollOptions struct {
	server, fingerprint, credential, deviceID, out, profile, csrFile, batch, exec string
	parallel                                                                      int
	renew                                                                         bool
	metadata                                                                      config.MapValue
	dns, ips                                                                      config.ListValue
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
	fs.Var(&o.dns, "dns", "DNS name of a service certificate (profiles server and broker; repeatable)")
	fs.Var(&o.ips, "ip", "IP address of a service certificate (repeatable)")
	fs.BoolVar(&o.renew, "renew", false, "keep running: renew at two thirds of each certificate's life (over mutual TLS), rewriting the files atomically")
	fs.StringVar(&o.exec, "exec", "", "shell command run after the files were (re)written, e.g. 'pkill -HUP mosquitto'")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	service := len(o.dns)+len(o.ips) > 0
	if service && o.deviceID == "" {
		// A service is named by its first name unless told otherwise.
		o.deviceID = append(append([]string{}, o.dns...), o.ips...)[0]
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
	case (o.renew || service) && (o.batch != "" || o.csrFile != ""):
		return usageError{errors.New("enroll: --renew, --dns and --ip keep one identity whose key fleetpki makes; drop --batch and --csr")}
	case o.exec != "" && !o.renew && !service:
		return usageError{errors.New("enroll: --exec needs --renew (or a service's --dns/--ip)")}
	}
	cl, err := client.New(o.server, o.fingerprint)
	if err != nil {
		return err
	}
	if o.renew || service {
		return c.keep(ctx, o)
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

// keep holds one identity in --out: it enrolls when there is no usable
// certificate there and, with --renew, renews until stopped, running
// --exec after each rewrite.
func (c *cli) keep(ctx context.Context, o enrollOptions) error {
	log := slog.New(slog.NewTextHandler(c.stderr, nil))
	var changed func(context.Context)
	if o.exec != "" {
		changed = func(ctx context.Context) { hook.Run(ctx, log, o.exec) }
	}
	k, err := client.Keep(ctx, o.server, o.fingerprint, client.KeeperConfig{Dir: o.out, Credential: o.credential, Changed: changed, Logger: log,
		Request: client.EnrollRequest{DeviceID: o.deviceID, Profile: o.profile, Metadata: o.metadata, DNSNames: o.dns, IPAddresses: o.ips}})
	if err != nil {
		return err
	}
	serial := pki.NewSerial(k.Leaf().SerialNumber)
	fmt.Fprintf(c.stderr, "%s: serial %s, valid until %s, files %s.key, %s.crt, fullchain.pem, chain.pem, root.pem in %s\n",
		o.deviceID, serial, k.Leaf().NotAfter.UTC().Format(time.RFC3339), k.Base(), k.Base(), o.out)
	if !o.renew {
		fmt.Fprintln(c.stdout, serial)
		return nil
	}
	return k.Run(ctx)
}
