package metrics

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HealthMaxAge: /healthz fails when the session has not published a
// snapshot for this long (it publishes every second while tracing).
const HealthMaxAge = 10 * time.Second

// Handler serves /metrics, /healthz and a short index at /.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog:            log.New(os.Stderr, "tcptrace: metrics: ", 0),
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		ok, last := m.Healthy(time.Now(), HealthMaxAge)
		switch {
		case ok:
			fmt.Fprintln(w, "ok")
		case last.IsZero():
			http.Error(w, "starting: not tracing yet", http.StatusServiceUnavailable)
		default:
			http.Error(w, fmt.Sprintf("stalled: the tracing loop last reported %s ago", time.Since(last).Round(time.Second)),
				http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "tcptrace: metrics at /metrics, health at /healthz")
	})
	return mux
}

// Listen binds addr (host:port) for the metrics server, with errors that
// say what to do.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var hint string
		switch {
		case errors.Is(err, errAddrInUse):
			hint = "another process listens there (another tcptrace?): stop it or pick another port"
		case errors.Is(err, errAddrNotAvail):
			hint = "no interface of this host has that address: give one of its addresses, or :PORT for all"
		case errors.Is(err, errAccess):
			hint = "ports below 1024 need root or CAP_NET_BIND_SERVICE: pick a port above 1023"
		default:
			hint = "give host:port, such as 127.0.0.1:9464 or :9464 for all addresses"
		}
		return nil, fmt.Errorf("--metrics %s: %w: %s", addr, err, hint)
	}
	return ln, nil
}

// Serve serves the handler on ln until the returned function is called,
// which closes the server, waiting a little for scrapes in flight.
func (m *Metrics) Serve(ln net.Listener) (stop func()) {
	srv := &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(os.Stderr, "tcptrace: metrics: ", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "tcptrace: metrics server stopped: %v\n", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}
}
