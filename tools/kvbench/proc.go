package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kvaudit/kvaudit/internal/config"
)

// handlerProc is bin/handler serving on a loopback port.
type handlerProc struct {
	cmd    *exec.Cmd
	url    string
	logs   *os.File // its stderr (the structured log)
	exited chan struct{}
	err    error
}

// freePort picks a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startHandler execs bin/handler with settings env on a free port; it does
// not wait for it to be ready (see waitReady). The clock of a start
// measurement runs from just before this call.
func (b *bench) startHandler(env map[string]string) (*handlerProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logs, err := os.CreateTemp(b.tmp, "handler-*.log")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(b.handler, "serve", "-port", strconv.Itoa(port))
	cmd.Env = cleanEnv()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		logs.Close()
		return nil, err
	}
	p := &handlerProc{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), logs: logs, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// settingNames are the settings the handler reads (and their
// identity-based forms, NAME__…): none may leak in from kvbench's own
// environment, a developer's shell say.
var settingNames = []string{
	config.SettingLogsStorage, config.SettingIndexStorage, config.SettingLogsContainer, config.SettingTablePrefix,
	config.SettingIngestWriters, config.SettingQueryMaxDays, config.SettingAPIKey, config.SettingLogLevel,
	config.SettingCustomPort, config.SettingCatchUpHours, config.SettingRetentionDays, config.SettingMaxBlobTries,
	config.SettingCatchUpSchedule, config.SettingCatchUpBudget, config.SettingTriggerBudget,
	config.SettingAlertTuning, config.SettingAlertWebhookURL, config.SettingAlertWebhookSecret, config.SettingAlertTeamsURL,
	config.SettingAlertEventGridTopic, config.SettingAlertEventGridClient, config.SettingAlertPageURL,
}

// cleanEnv is kvbench's environment without the handler's settings.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		base, _, _ := strings.Cut(name, "__")
		if !slices.Contains(settingNames, base) {
			env = append(env, kv)
		}
	}
	return env
}

// readyClient polls GET /: short timeouts, no keep-alive between polls
// that failed to connect.
var readyClient = &http.Client{Timeout: time.Second}

// waitReady polls GET / every 200 µs until it answers 200, the process
// exits, or limit passes.
func (p *handlerProc) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/", nil)
		resp, err := readyClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("handler exited before it was ready: %v; log: %s", p.err, p.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Microsecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("handler not ready after %v; log: %s", limit, p.logTail())
		}
	}
}

// stop sends SIGTERM, waits up to 10 s, then kills.
func (p *handlerProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.logs.Close()
	os.Remove(p.logs.Name())
}

func (p *handlerProc) logTail() string {
	b, err := os.ReadFile(p.logs.Name())
	if err != nil {
		return err.Error()
	}
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}

// procStatus reads a field of /proc/<pid>/status, in KiB.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			f := strings.Fields(v)
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no " + field + " in /proc/<pid>/status")
}

// handlerEnv is the settings of a handler on Azurite.
func (b *bench) handlerEnv(container, prefix string) map[string]string {
	return map[string]string{
		"AuditLogsStorage":      b.az.ConnectionString,
		"AuditLogsContainer":    container,
		"AuditIndexTablePrefix": prefix,
		"IngestConcurrency":     strconv.Itoa(b.o.concurrency),
		"AuditLogLevel":         "info",
		// The generated records are of 2025, older than the default
		// retention, which the handler does not index.
		"RetentionDays": "36600",
		// The memory figure is that of one invocation indexing the whole
		// blob, as in BENCHMARKS.md; in Azure the budget (default 300 s)
		// would hand the rest of a blob this large to CatchUp.
		"BlobTriggerBudgetSeconds": "3600",
	}
}
