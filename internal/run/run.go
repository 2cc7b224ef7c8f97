// Package run runs a process's components together: until the context
// ends, or until one fails, which stops the others.
package run

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// Part is one running component (a listener, a renewer, a publisher).
type Part struct {
	Name string
	Run  func(ctx context.Context) error
}

// All runs parts until ctx ends or one fails; the error names the part.
func All(ctx context.Context, parts []Part) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range parts {
		g.Go(func() error {
			if err := p.Run(gctx); err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			return nil
		})
	}
	return g.Wait()
}
