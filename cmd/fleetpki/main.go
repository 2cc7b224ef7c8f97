// Command fleetpki is the one fleetpki binary and its composition root: it
// reads the configuration, builds the store, the CA and the listeners, and
// runs them until a signal asks it to stop.
//
// Policy: nothing outside this package knows the concrete store types.
// Start-up problems end the process with a non-zero status and one line on
// standard error, never a stack trace. A command that prints a secret prints
// it alone on the last line of standard output; everything meant for people
// goes to standard error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fleetpki/fleetpki/internal/config"
)

func main() {
	c := &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, lookupEnv: os.LookupEnv}
	os.Exit(c.run(os.Args[1:]))
}

// cli is the process's environment, passed explicitly so that tests can run
// commands in-process.
type cli struct {
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	lookupEnv func(string) (string, bool)
}

// command is one subcommand; name may be two words ("user create").
type command struct {
	name    string
	summary string
	run     func(c *cli, ctx context.Context, args []string) error
}

// commands lists the subcommands in the order help shows them.
func commands() []command {
	return []command{
		{"serve", "run the CA's HTTP endpoints (creates the CA and the admin user on first start)", (*cli).serve},
		{"init", "create or import the CA hierarchy without serving", (*cli).initCA},
		{"migrate", "apply pending database migrations", (*cli).migrate},
		{"backup", "write an encrypted, consistent backup (database, CA files) while serve runs", (*cli).backupCmd},
		{"restore", "restore a backup into an empty data directory and database", (*cli).restoreCmd},
		{"root sign", "on the offline machine: sign the root's CRL and OCSP answers about the issuing CA ahead, for serve to publish", (*cli).rootSign},
		{"user create", "create an administrator (prints a generated password)", (*cli).userCreate},
		{"user token", "create an admin API token for a user (prints it once)", (*cli).userToken},
		{"user disable", "disable a user (sessions and API tokens stop)", userSetDisabled(true)},
		{"user enable", "enable a disabled user again", userSetDisabled(false)},
		{"credential create", "create an enrollment credential (prints its secret once)", (*cli).credentialCreate},
		{"credential list", "list the enrollment credentials", (*cli).credentialList},
		{"credential disable", "disable an enrollment credential", (*cli).credentialDisable},
		{"audit verify", "check the audit log's hash chain", (*cli).auditVerify},
		{"version", "print the version", (*cli).version},
		{"enroll", "enroll a device or a batch of devices (the factory station's client)", (*cli).enroll},
		{"revoke", "revoke a certificate (--serial) or all of a device's (--device-id)", (*cli).revoke},
		{"broker", "run a standalone MQTT broker that checks devices over a remote fleetpki's OCSP", (*cli).brokerStandalone},
		{"crl export", "write the current CRL to a file (PEM), with --watch on every change", (*cli).crlExport},
		{"ocsp", "run a responder-only OCSP server from the responses serve pre-signs (no keys needed)", (*cli).ocspOnly},
	}
}

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // the command line is wrong, or the command does not exist yet
)

// usageError marks errors of the command line itself (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// run runs the command named by args and returns the exit status.
func (c *cli) run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cmd, rest, ok := findCommand(args)
	if !ok {
		if len(args) == 0 {
			c.usage(c.stderr)
			return exitUsage
		}
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			c.usage(c.stdout)
			return exitOK
		}
		fmt.Fprintf(c.stderr, "fleetpki: unknown command %q; run 'fleetpki help'\n", unknownName(args))
		return exitUsage
	}
	err := cmd.run(c, ctx, rest)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintln(c.stderr, "fleetpki: "+oneLine(err.Error()))
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	return exitError
}

// findCommand finds the command whose name (one or two words) starts args.
func findCommand(args []string) (command, []string, bool) {
	for _, cmd := range commands() {
		words := strings.Fields(cmd.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == cmd.name {
			return cmd, args[len(words):], true
		}
	}
	return command{}, nil, false
}

// unknownName is the part of args an unknown command is named by: one word,
// or two after a group word such as "user".
func unknownName(args []string) string {
	for _, cmd := range commands() {
		if group, _, two := strings.Cut(cmd.name, " "); two && group == args[0] && len(args) > 1 {
			return args[0] + " " + args[1]
		}
	}
	return args[0]
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: fleetpki <command> [flags]\n\nCommands:")
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %-19s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintln(w, "\nRun 'fleetpki <command> -h' for a command's flags. Every flag can also be set")
	fmt.Fprintln(w, "with an environment variable FLEETPKI_<FLAG_IN_UPPER_SNAKE>; a flag wins.")
}

// oneLine keeps an error on one line of standard error, whatever a library
// put into its message.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// newFlags returns the flag set of the command with the settings of its
// groups registered into cfg (an unknown command registers none).
func (c *cli) newFlags(name string, cfg *config.Config) *flag.FlagSet {
	fs := flag.NewFlagSet("fleetpki "+name, flag.ContinueOnError)
	// Parse errors are reported by parse as one line; help goes to stdout.
	fs.SetOutput(io.Discard)
	cfg.Register(fs, name, c.lookupEnv)
	return fs
}

// parse applies the environment to fs's flags and then parses args into
// them: -h prints the flags to standard output and returns flag.ErrHelp
// (exit status 0); positional arguments and flags of other commands are
// refused.
func (c *cli) parse(fs *flag.FlagSet, args []string) error {
	name := strings.TrimPrefix(fs.Name(), "fleetpki ")
	if err := config.ApplyEnv(fs, c.lookupEnv); err != nil {
		return usageError{fmt.Errorf("%s: %w", name, err)}
	}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(c.stdout)
		fmt.Fprintf(c.stdout, "Usage: %s [flags]\n\nFlags:\n", fs.Name())
		fs.PrintDefaults()
		return flag.ErrHelp
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err != nil {
		return usageError{fmt.Errorf("%s: %w; run '%s -h'", name, err, fs.Name())}
	}
	return nil
}

// start parses args, validates the configuration and returns the logger:
// the opening of every command.
func (c *cli) start(fs *flag.FlagSet, cfg *config.Config, args []string) (*slog.Logger, error) {
	if err := c.parse(fs, args); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg.NewLogger(c.stderr), nil
}

// isSet reports whether the flag was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
