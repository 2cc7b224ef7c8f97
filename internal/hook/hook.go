// Package hook runs an operator's shell command after fleetpki wrote a file
// another program reads (a CRL, a certificate and key), e.g. 'pkill -HUP
// mosquitto', so that program reloads without a restart.
package hook

import (
	"context"
	"log/slog"
	"os/exec"
	"strings"
	"time"
)

// Timeout bounds one run of a hook.
const Timeout = time.Minute

// Run runs command with /bin/sh -c; its failure is logged, not fatal: the
// file is written, and the next change runs the hook again.
func Run(ctx context.Context, log *slog.Logger, command string) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", command).CombinedOutput()
	if err != nil {
		log.WarnContext(ctx, "--exec failed", "command", command, "err", err, "output", strings.TrimSpace(string(out)))
		return
	}
	log.InfoContext(ctx, "--exec ran", "command", command)
}
