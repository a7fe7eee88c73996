package main

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvaudit/kvaudit/internal/alert"
	"github.com/kvaudit/kvaudit/internal/config"
)

// receive runs a webhook receiver on loopback for make run: it checks
// each alert's Standard Webhooks signature with AlertWebhookSecret and
// prints one line per alert (and the same to -log), so a newcomer sees
// where alerts go and what they hold.
func receive(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("receive", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:7072", "loopback address to listen on")
	logPath := fs.String("log", "", "also append each alert's JSON to this file")
	_ = fs.Parse(args)
	key, err := alert.ParseSecret(os.Getenv(config.SettingAlertWebhookSecret))
	if err != nil {
		return fmt.Errorf("%s: %w", config.SettingAlertWebhookSecret, err)
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || !(host == "127.0.0.1" || host == "::1" || host == "localhost") {
		return errors.New("receive listens on loopback only")
	}
	var logf *os.File
	if *logPath != "" {
		if logf, err = os.OpenFile(*logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); err != nil {
			return err
		}
		defer logf.Close()
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	srv := &http.Server{Addr: *addr, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || r.Method != http.MethodPost {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
		sec, _ := strconv.ParseInt(ts, 10, 64)
		want := alert.Sign(key, id, sec, body)
		ok := false
		for _, sig := range strings.Fields(r.Header.Get("webhook-signature")) {
			ok = ok || hmac.Equal([]byte(sig), []byte(want))
		}
		if !ok {
			fmt.Printf("devhost receive: refused a delivery whose signature does not verify (webhook-id %q)\n", id)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev alert.CloudEvent
		if err := json.Unmarshal(body, &ev); err != nil || ev.Data == nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		again := ""
		mu.Lock()
		defer mu.Unlock()
		if seen[id] {
			again = " (a repeat of an id already received: drop it)"
		}
		seen[id] = true
		fmt.Printf("ALERT %s [%s] %s\n      id %s, signature verified%s; events: %s\n", ev.Data.Severity, ev.Type, ev.Data.Title, id, again, ev.Data.Link)
		if logf != nil {
			_, _ = logf.Write(append(body, '\n'))
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Printf("devhost receive: alert webhook on http://%s/alerts\n", *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
