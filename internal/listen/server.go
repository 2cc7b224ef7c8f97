package listen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout bounds the wait for in-flight requests when a Server stops.
const ShutdownTimeout = 10 * time.Second

// Server runs an http.Server on a listener as a component: Run serves
// until ctx ends, then shuts down gracefully (OnShutdown first, so that
// long-lived streams can end) within ShutdownTimeout.
type Server struct {
	Name     string
	HTTP     *http.Server
	Listener net.Listener
	// OnShutdown, when set, is called as the shutdown begins.
	OnShutdown func()
}

// Run serves until ctx ends or the listener fails.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.HTTP.Serve(s.Listener) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("%s listener: %w", s.Name, err)
	case <-ctx.Done():
	}
	if s.OnShutdown != nil {
		s.OnShutdown()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err := s.HTTP.Shutdown(sctx)
	<-errc
	if err != nil {
		return fmt.Errorf("%s listener: shutdown: %w", s.Name, err)
	}
	return nil
}
