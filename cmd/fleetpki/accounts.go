package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/accounts"
	"github.com/fleetpki/fleetpki/internal/config"
	"github.com/fleetpki/fleetpki/pki"
)

// defaultTokenTTL keeps a forgotten admin token from living for ever;
// --ttl 0 asks for one that does not expire.
const defaultTokenTTL = 90 * 24 * time.Hour

// userCreate creates an administrator (or a broker's machine identity). The
// password is generated and printed alone on the last line of standard
// output, or read from the first line of standard input with
// --password-stdin (and then not printed).
func (c *cli) userCreate(ctx context.Context, args []string) error {
	cfg := &config.Config{}
	fs := c.newFlags("user create", cfg)
	name := fs.String("name", "", "user name (required): 1–64 of a-z 0-9 . _ -")
	role := fs.String("role", "", "admin, operator, auditor, or broker (a standalone broker's machine identity) (required)")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input instead of generating one")
	log, err := c.start(fs, cfg, args)
	if err != nil {
		return err
	}
	if *name == "" || *role == "" {
		return usageError{errors.New("user create: --name and --role are required")}
	}
	r, err := pki.ParseRole(*role)
	if err != nil {
		return usageError{fmt.Errorf("user create: --role: %w", err)}
	}
	e, err := c.open(ctx, cfg, log, openStoreOnly)
	if err != nil {
		return err
	}
	defer e.close()
	password := accounts.RandomPassword()
	if *fromStdin {
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("read the password from standard input: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
	}
	if _, err := accounts.NewUsers(e.st, nil).CreateUser(ctx, *name, r, password, cliActor()); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "Created user %q with role %s.\n", *name, r)
	if !*fromStdin {
		fmt.Fprintln(c.stderr, "Its password follows; it is shown only now:")
		fmt.Fprintln(c.stdout, password)
	}
	return nil
}

// userToken creates an admin API token for an existing user and prints it
// alone on the last line of standard output.
func (c *cli) userToken(ctx context.Context, args []string) error {
	return c.storeCommand(ctx, "user token", args, func(fs *flag.FlagSet) (func() error, func(context.Context, *env) error) {
		name := fs.String("name", "", "user the token acts as (required)")
		ttl := config.DurationValue(defaultTokenTTL)
		fs.Var(&ttl, "ttl", "token lifetime, e.g. 12h or 30d; 0 means it never expires")
		return required("user token", "--name", name), func(ctx context.Context, e *env) error {
			secret, err := accounts.NewUsers(e.st, nil).CreateToken(ctx, *name, time.Duration(ttl), cliActor())
			if err != nil {
				return err
			}
			expiry := "never expires"
			if ttl > 0 {
				expiry = "expires " + time.Now().Add(time.Duration(ttl)).UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(c.stderr, "API token for %q (%s); it is shown only now:\n", *name, expiry)
			fmt.Fprintln(c.stdout, secret)
			return nil
		}
	})
}

// userSetDisabled returns the `user disable` or `user enable` command.
func userSetDisabled(disable bool) func(c *cli, ctx context.Context, args []string) error {
	verb := "enable"
	if disable {
		verb = "disable"
	}
	return func(c *cli, ctx context.Context, args []string) error {
		return c.storeCommand(ctx, "user "+verb, args, func(fs *flag.FlagSet) (func() error, func(context.Context, *env) error) {
			name := fs.String("name", "", "user name (required)")
			return required("user "+verb, "--name", name), func(ctx context.Context, e *env) error {
				if err := accounts.NewUsers(e.st, nil).SetUserDisabled(ctx, *name, disable, cliActor()); err != nil {
					return err
				}
				fmt.Fprintf(c.stderr, "User %q is %sd; their sessions and API tokens follow at the next request.\n", *name, verb)
				return nil
			}
		})
	}
}

// credentialCreate creates an enrollment credential for a factory line and
// prints its secret alone on the last line of standard output.
func (c *cli) credentialCreate(ctx context.Context, args []string) error {
	cfg := &config.Config{}
	fs := c.newFlags("credential create", cfg)
	name := fs.String("name", "", "credential name (required), e.g. the factory line")
	var profiles config.ListValue
	fs.Var(&profiles, "profile", "profile the credential may enroll with; repeat or comma-separate (default device)")
	pattern := fs.String("device-pattern", "", "regular expression the whole device id must match (default: any id)")
	namePattern := fs.String("name-pattern", "", "regular expression every DNS name or IP address of a server or broker certificate must match, e.g. '[a-z0-9-]+\\.mqtt\\.example' (default: none; such certificates are refused)")
	var expires config.DurationValue
	fs.Var(&expires, "expires", "lifetime, e.g. 720h or 30d; 0 means it never expires")
	maxUses := fs.Int64("max-uses", 0, "number of enrollments allowed; 0 means unlimited")
	noReenroll := fs.Bool("no-reenroll", false, "refuse device ids that are enrolled already (a bootstrap credential for new devices)")
	log, err := c.start(fs, cfg, args)
	if err != nil {
		return err
	}
	if *name == "" {
		return usageError{errors.New("credential create: --name is required")}
	}
	what := openStoreOnly
	if len(profiles) > 0 {
		what = openCA // the CA knows the profiles
	}
	e, err := c.open(ctx, cfg, log, what)
	if err != nil {
		return err
	}
	defer e.close()
	if e.ca != nil {
		// Refuse a profile the CA does not know now rather than at the first enrollment.
		known := e.ca.Profiles()
		for _, p := range profiles {
			if !slices.Contains(known, p) {
				return usageError{fmt.Errorf("credential create: unknown profile %q (known: %s)", p, strings.Join(known, ", "))}
			}
		}
	}
	secret, cred, err := accounts.NewCredentials(e.st, nil).CreateCredential(ctx, accounts.CredentialSpec{
		Name: *name, Profiles: profiles, DevicePattern: *pattern, TTL: time.Duration(expires), MaxUses: *maxUses,
		NoReenroll: *noReenroll, NamePattern: *namePattern,
	}, cliActor())
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "Created enrollment credential %q (id %s, profiles %s); its secret is shown only now:\n",
		cred.Name, cred.ID, strings.Join(cred.Profiles, ","))
	fmt.Fprintln(c.stdout, secret)
	return nil
}

// credentialList prints the enrollment credentials, one per line (tab-separated).
func (c *cli) credentialList(ctx context.Context, args []string) error {
	return c.storeCommand(ctx, "credential list", args, func(*flag.FlagSet) (func() error, func(context.Context, *env) error) {
		return nil, func(ctx context.Context, e *env) error {
			creds, err := accounts.NewCredentials(e.st, nil).ListCredentials(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, "ID\tNAME\tPATTERN\tUSES\tMAX_USES\tEXPIRES\tSTATE\tPROFILES\tNAME_PATTERN")
			for _, cr := range creds {
				exp, state := "never", "enabled"
				if cr.ExpiresAt != nil {
					exp = cr.ExpiresAt.UTC().Format(time.RFC3339)
				}
				if cr.Disabled {
					state = "disabled"
				}
				fmt.Fprintf(c.stdout, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", cr.ID, cr.Name, cr.DevicePattern, cr.Uses, cr.MaxUses, exp, state,
					strings.Join(cr.Profiles, ","), cr.NamePattern)
			}
			return nil
		}
	})
}

// credentialDisable disables an enrollment credential by id.
func (c *cli) credentialDisable(ctx context.Context, args []string) error {
	return c.storeCommand(ctx, "credential disable", args, func(fs *flag.FlagSet) (func() error, func(context.Context, *env) error) {
		id := fs.String("id", "", "credential id, as `credential list` shows it (required)")
		return required("credential disable", "--id", id), func(ctx context.Context, e *env) error {
			if err := accounts.NewCredentials(e.st, nil).DisableCredential(ctx, *id, cliActor()); err != nil {
				return err
			}
			fmt.Fprintf(c.stderr, "Credential %s is disabled; running servers refuse it within a second.\n", *id)
			return nil
		}
	})
}

// storeCommand runs a command on the store: setup registers the command's
// flags and returns a check of them (nil: none) and the work, which runs
// once the flags are parsed, checked, and the store is open.
func (c *cli) storeCommand(ctx context.Context, name string, args []string,
	setup func(*flag.FlagSet) (check func() error, run func(context.Context, *env) error)) error {
	return c.storeCommandAs(ctx, name, args, openStoreOnly, setup)
}

// storeCommandAs is storeCommand opening the store as what says (e.g.
// without migrating it).
func (c *cli) storeCommandAs(ctx context.Context, name string, args []string, what openWhat,
	setup func(*flag.FlagSet) (check func() error, run func(context.Context, *env) error)) error {
	cfg := &config.Config{}
	fs := c.newFlags(name, cfg)
	check, run := setup(fs)
	log, err := c.start(fs, cfg, args)
	if err != nil {
		return err
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	e, err := c.open(ctx, cfg, log, what)
	if err != nil {
		return err
	}
	defer e.close()
	return run(ctx, e)
}

// required is a check that a string flag is set.
func required(command, flagName string, v *string) func() error {
	return func() error {
		if *v == "" {
			return usageError{fmt.Errorf("%s: %s is required", command, flagName)}
		}
		return nil
	}
}
