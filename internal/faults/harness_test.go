package faults

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/funchost/hosttest"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
)

var discardLog = log.New(io.Discard, "", 0)

// Safety limits: no loop of the suite runs longer or more often than these.
const (
	readyLimit      = 20 * time.Second // a handler answering GET /
	invocationLimit = 3 * time.Minute  // one invocation
	settleLimit     = 4 * time.Minute  // invoking until every blob is indexed
	settleRounds    = 30
)

// env is one case's world: a container and table prefix of their own in an
// Azurite, proxies in front of its blob and table endpoints, and the handler
// subprocess reaching storage through them.
type env struct {
	t         *testing.T
	az        *azuritetest.Azurite
	vault     string
	hour      time.Time // the blobs' hour: the current one, so CatchUp lists them
	prefix    string    // table prefix
	container string
	corr      string // correlation id prefix

	cc     *container.Client // straight to Azurite
	tables *index.Tables     // straight to Azurite
	blobs  *proxy
	table  *proxy

	settings map[string]string // extra handler settings

	mu      sync.Mutex
	h       *handlerProc
	logs    []string       // every handler log file of the case
	written map[string]int // correlation id -> times written (always 1)
	lengths map[string]int64
	retries atomic.Int64
	start   time.Time
	logDir  string
}

// step logs a stage of the case with the time since it began.
func (e *env) step(format string, args ...any) {
	e.t.Helper()
	e.t.Logf("[%6.1fs] %s", time.Since(e.start).Seconds(), fmt.Sprintf(format, args...))
}

// newEnv prepares a case in az (nil: the shared in-memory Azurite).
func newEnv(t *testing.T, az *azuritetest.Azurite) *env {
	t.Helper()
	if az == nil {
		az = azuritetest.Require(t)
	}
	var b [5]byte
	_, _ = rand.Read(b[:])
	id := fmt.Sprintf("%x", b)
	logDir := t.TempDir() // before the cleanup below, so removed after it
	e := &env{
		logDir: logDir,
		t:      t, az: az, vault: "fault" + id[:6], hour: time.Now().UTC().Truncate(time.Hour),
		prefix: "f" + id, container: "logs-" + id, corr: "c" + id,
		settings: map[string]string{}, written: map[string]int{}, lengths: map[string]int64{}, start: time.Now(),
	}
	acct, err := config.ParseConnectionString(az.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := azstore.NewBlobClient(acct)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := azstore.NewTableClient(acct)
	if err != nil {
		t.Fatal(err)
	}
	e.cc = bc.ServiceClient().NewContainerClient(e.container)
	if _, err := e.cc.Create(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	e.tables = index.NewTables(tc, e.prefix)
	e.blobs = newProxy(t, az.BlobURL)
	e.table = newProxy(t, az.TableURL)
	t.Cleanup(func() {
		e.mu.Lock()
		h := e.h
		e.mu.Unlock()
		if h != nil {
			h.kill()
		}
		if t.Failed() {
			e.dumpLogs()
			return
		}
		// Keep the shared Azurite lean for the next cases.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, short := range index.AllTables {
			_, _ = e.tables.Client(short).Delete(ctx, nil)
		}
		_, _ = e.cc.Delete(ctx, nil)
	})
	return e
}

// blob is the name of the case's blob i (distinct vault path suffix).
func (e *env) blob(i int) string {
	if i == 0 {
		return blobName(e.vault, e.hour)
	}
	return blobName(fmt.Sprintf("%s-%d", e.vault, i), e.hour)
}

// append appends records [first, first+count) to blob name, creating it when
// create is set, in Append Blocks of at most 4 MiB, straight to Azurite.
func (e *env) append(name string, create bool, first, count, pad int) {
	e.t.Helper()
	vault := e.vault
	if bp := strings.Split(name, "/VAULTS/"); len(bp) == 2 {
		vault = strings.ToLower(bp[1][:strings.Index(bp[1], "/")])
	}
	data := records(vault, e.corr, e.hour, first, count, pad)
	ab := e.cc.NewAppendBlobClient(name)
	ctx := context.Background()
	if create {
		if _, err := ab.Create(ctx, nil); err != nil {
			e.t.Fatal(err)
		}
	}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 4<<20)
		if _, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(rest[:n])), nil); err != nil {
			e.t.Fatalf("append to %s: %v", name, err)
		}
		rest = rest[n:]
	}
	e.mu.Lock()
	for n := first; n < first+count; n++ {
		e.written[fmt.Sprintf("%s-%07d", e.corr, n)]++
	}
	e.lengths[name] += int64(len(data))
	e.mu.Unlock()
}

// connectionString points the handler at the proxies.
func (e *env) connectionString() string {
	return "DefaultEndpointsProtocol=http;AccountName=" + azuritetest.AccountName +
		";AccountKey=" + azuritetest.AccountKey +
		";BlobEndpoint=" + e.blobs.URL + ";TableEndpoint=" + e.table.URL + ";"
}

// handlerProc is the handler binary serving on a loopback port, as the
// Functions host starts it (FUNCTIONS_CUSTOMHANDLER_PORT set).
type handlerProc struct {
	cmd    *exec.Cmd
	url    string
	exited chan struct{}
	logf   *os.File
}

// startHandler starts a handler (after the previous one, if any, is gone)
// and waits until it answers GET /.
func (e *env) startHandler() *handlerProc {
	e.t.Helper()
	bin := handlerBinary(e.t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	logf, err := os.Create(filepath.Join(e.logDir, fmt.Sprintf("handler-%d.log", port)))
	if err != nil {
		e.t.Fatal(err)
	}
	settings := map[string]string{
		config.SettingLogsStorage:     e.connectionString(),
		config.SettingLogsContainer:   e.container,
		config.SettingTablePrefix:     e.prefix,
		config.SettingCustomPort:      strconv.Itoa(port),
		config.SettingLogLevel:        "info",
		config.SettingCatchUpHours:    "3",
		config.SettingIngestWriters:   "8",
		config.SettingCatchUpBudget:   "120",
		config.SettingCatchUpSchedule: "0 */2 * * * *",
	}
	for k, v := range e.settings {
		settings[k] = v
	}
	cmd := exec.Command(bin)
	// Only what a Go binary needs, and the settings: nothing of the
	// developer's environment reaches the handler.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "TMPDIR=" + os.TempDir()}
	for k, v := range settings {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	h := &handlerProc{cmd: cmd, url: "http://127.0.0.1:" + strconv.Itoa(port), exited: make(chan struct{}), logf: logf}
	go func() { _ = cmd.Wait(); close(h.exited) }()
	e.mu.Lock()
	e.h = h
	e.logs = append(e.logs, logf.Name())
	e.mu.Unlock()

	deadline := time.Now().Add(readyLimit)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(h.url + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h
			}
		}
		select {
		case <-h.exited:
			e.t.Fatalf("handler exited before it was ready:\n%s", tail(logf.Name(), 2000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("handler not ready after %v:\n%s", readyLimit, tail(logf.Name(), 2000))
		}
	}
}

// kill SIGKILLs the handler and waits for it: no shutdown, nothing flushed.
func (h *handlerProc) kill() {
	_ = h.cmd.Process.Kill()
	<-h.exited
	h.logf.Close()
}

// handler returns the running handler.
func (e *env) handler() *handlerProc {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.h
}

// invocationClient keeps no connection pool between cases and has no
// timeout of its own: each invocation's context bounds it.
var invocationClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

// invokeBlob sends the host's BlobTrigger invocation for name, as the
// polling trigger would (the whole content embedded), and returns the
// status and Logs. A non-200 or a cut connection counts as a host retry.
func (e *env) invokeBlob(ctx context.Context, name string) (int, []string, error) {
	h := e.handler()
	content, length := e.content(ctx, name)
	req, err := hosttest.NewBlobRequest(ctx, h.url, hosttest.BlobInvocation{
		Name: name, Container: e.container, AccountURL: e.az.BlobURL,
		Content: bytes.NewReader(content), ContentLength: length,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	status, resp, err := hosttest.Do(invocationClient, req)
	if err != nil || status != http.StatusOK {
		e.retries.Add(1)
	}
	return status, resp.Logs, err
}

// content is the blob as the host would embed it (empty if unreadable:
// the handler reads the blob itself and skips what the host sends).
func (e *env) content(ctx context.Context, name string) ([]byte, int64) {
	resp, err := e.cc.NewBlobClient(name).DownloadStream(ctx, nil)
	if err != nil {
		return nil, 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return b, int64(len(b))
}

// invokeCatchUp sends the host's CatchUp timer invocation.
func (e *env) invokeCatchUp(ctx context.Context) (int, []string, error) {
	req, err := hosttest.NewTimerRequest(ctx, e.handler().url, hosttest.TimerInvocation{})
	if err != nil {
		e.t.Fatal(err)
	}
	status, resp, err := hosttest.Do(invocationClient, req)
	if err != nil || status != http.StatusOK {
		e.retries.Add(1)
	}
	return status, resp.Logs, err
}

// checkpoint is a blob's checkpoint as stored: offset, failed tries, error.
func (e *env) checkpoint(ctx context.Context, name string) (offset int64, tries int, lastErr string, err error) {
	cp, err := ingest.ReadCheckpoint(ctx, e.tables, name)
	if err != nil {
		return 0, 0, "", err
	}
	return cp.Offset, cp.Tries, cp.LastError, nil
}

// settle invokes BlobTrigger for each blob, then CatchUp, round after round,
// until every blob's checkpoint is at its length with no failure recorded.
// It is bounded in rounds and time; it fails the test when they run out.
func (e *env) settle() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settleLimit)
	defer cancel()
	e.mu.Lock()
	lengths := map[string]int64{}
	for k, v := range e.lengths {
		lengths[k] = v
	}
	e.mu.Unlock()
	var last string
	for round := 0; round < settleRounds; round++ {
		if ctx.Err() != nil {
			break
		}
		done := true
		last = ""
		for name, length := range lengths {
			off, tries, lastErr, err := e.checkpoint(ctx, name)
			if err != nil || off != length || tries != 0 {
				done = false
				last += fmt.Sprintf("%s: checkpoint %d of %d, tries %d, error %q (%v); ", name, off, length, tries, lastErr, err)
			}
		}
		if done {
			e.step("up to date after %d settle rounds", round)
			return
		}
		for name := range lengths {
			ictx, icancel := context.WithTimeout(ctx, invocationLimit)
			_, _, _ = e.invokeBlob(ictx, name)
			icancel()
		}
		ictx, icancel := context.WithTimeout(ctx, invocationLimit)
		_, _, _ = e.invokeCatchUp(ictx)
		icancel()
	}
	e.t.Fatalf("not up to date after %d rounds or %v: %s", settleRounds, settleLimit, last)
}

// statsTotal asks the handler for the vault's event count over the hours
// around the blobs' hour (whole hours: read from the counts rows).
func (e *env) statsTotal(vault string) (int64, error) {
	q := fmt.Sprintf("%s/api/audit/stats?vault=%s&by=operation&from=%s&to=%s", e.handler().url, vault,
		e.hour.Add(-3*time.Hour).Format(time.RFC3339), e.hour.Add(3*time.Hour).Format(time.RFC3339))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, q, nil)
	resp, err := invocationClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Total int64  `json:"total"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("stats: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("stats: %d %s", resp.StatusCode, body.Error)
	}
	return body.Total, nil
}

// races sums the checkpoint races every handler of the case logged.
func (e *env) races() int {
	e.mu.Lock()
	files := append([]string(nil), e.logs...)
	e.mu.Unlock()
	n := 0
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct {
				Msg   string `json:"msg"`
				Races int    `json:"races"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "blob indexed" {
				n += line.Races
			}
		}
		fh.Close()
	}
	return n
}

func (e *env) dumpLogs() {
	e.mu.Lock()
	files := append([]string(nil), e.logs...)
	e.mu.Unlock()
	for _, f := range files {
		e.t.Logf("--- %s (tail) ---\n%s", filepath.Base(f), tail(f, 3000))
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
