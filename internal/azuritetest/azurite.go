// Package azuritetest starts a private Azurite for a test binary and gives
// its connection strings.
//
// Azurite is the one pinned in the module's package.json, installed by
// `npm ci` at the module root into node_modules/.bin/azurite. Each Start
// runs its own Azurite on free loopback ports, in memory unless a location
// is given, so test binaries running in parallel never share state.
//
// A test binary uses it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(azuritetest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		az := azuritetest.Require(t) // skips, naming what is missing, when Azurite is not installed
//		client, err := aztables.NewServiceClientFromConnectionString(az.ConnectionString, nil)
//		…
//	}
//
// Tools (the dev server behind `make run`) call Start and Stop directly, as
// do tests needing an Azurite of their own: Options.HTTPS and Options.OAuth
// give one over TLS that accepts bearer tokens, for identity-based access.
package azuritetest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The well-known development account every Azurite serves.
const (
	AccountName = "devstoreaccount1"
	AccountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

const (
	// readyTimeout bounds the wait for Azurite's three ports to accept.
	readyTimeout = 30 * time.Second
	// stopTimeout bounds the wait for a graceful exit, during which Azurite
	// saves a persistent location; after it the process group is killed.
	stopTimeout = 10 * time.Second
	// startAttempts bounds retries when a port picked as free is taken by
	// the time Azurite binds it.
	startAttempts = 5
	// logTail is how much of Azurite's output a start error quotes.
	logTail = 2 << 10
)

// ErrNotInstalled reports that Azurite (or the node it runs on) is missing.
var ErrNotInstalled = errors.New("azuritetest: Azurite not installed")

// Options configure Start. The zero value runs Azurite in memory, over HTTP.
type Options struct {
	// Location is the directory Azurite persists to; "" keeps everything in
	// memory, lost on Stop or Restart.
	Location string
	// HTTPS serves the three endpoints over TLS with a certificate for
	// 127.0.0.1 and localhost that Start makes and signs itself (ECDSA
	// P-256, valid a week). Trust it in-process with [Azurite.HTTPClient],
	// in a Go subprocess with SSL_CERT_FILE=[Azurite.CertFile].
	HTTPS bool
	// OAuth makes Azurite accept bearer tokens (`--oauth basic`) besides
	// the account key. Azurite's basic check decodes the JWT and checks
	// its nbf/iat/exp, an issuer starting https://sts.windows.net/ (or
	// another Entra authority) and an audience of https://storage.azure.com
	// or the account's service URL; it does not check the signature or any
	// role. Azurite refuses bearer tokens over HTTP, so OAuth implies HTTPS.
	OAuth bool
	// Account, when set, is the one account this Azurite serves instead of
	// devstoreaccount1 (through AZURITE_ACCOUNTS, with AccountKey as its
	// key): a second logs account with a name of its own, as Azure has.
	// 3 to 24 lower-case letters and digits.
	Account string
}

// Azurite is a running Azurite process. Its methods are safe for
// concurrent use.
type Azurite struct {
	// Service URLs, with the account: http://127.0.0.1:<port>/devstoreaccount1
	// (https:// with Options.HTTPS; Options.Account instead of
	// devstoreaccount1 when set).
	BlobURL, QueueURL, TableURL string
	// Account is the account's name: AccountName, or Options.Account.
	Account string
	// ConnectionString names the account, its key and the three endpoints.
	ConnectionString string
	// LogPath is the file receiving Azurite's stdout and stderr; Stop
	// removes it and Restart starts a new one.
	LogPath string
	// CertFile is the PEM certificate Azurite serves with Options.HTTPS
	// ("" without): the only root a client needs. It exists while Azurite
	// runs; Stop removes it and Restart writes it again, unchanged.
	CertFile string

	root  string // module root, where node_modules lives
	opts  Options
	ports [3]int // blob, queue, table
	tls   *selfSigned
	// certDir holds cert.pem and key.pem while Azurite runs.
	certDir string

	mu   sync.Mutex
	proc *process // nil when stopped
	log  *os.File
}

// process is one run of Azurite.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
	err    error         // cmd.Wait's result, set before exited closes
}

// Start starts an Azurite on free loopback ports and waits until its blob,
// queue and table ports accept connections (at most 30 s).
//
// It fails with an error wrapping ErrNotInstalled when node_modules/.bin/azurite
// or node is missing; other start errors quote the tail of Azurite's log.
// The process runs in its own process group, killed by Stop, and on Linux
// it is also killed if the test binary dies first.
func Start(opts Options) (*Azurite, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	if err := checkInstalled(root); err != nil {
		return nil, err
	}
	if opts.Location != "" {
		if opts.Location, err = filepath.Abs(opts.Location); err != nil {
			return nil, fmt.Errorf("azuritetest: location: %w", err)
		}
	}
	if opts.OAuth {
		opts.HTTPS = true
	}
	a := &Azurite{root: root, opts: opts}
	if opts.HTTPS {
		if a.tls, err = newSelfSigned(); err != nil {
			return nil, err
		}
		if a.certDir, err = os.MkdirTemp("", "azurite-tls-*"); err != nil {
			return nil, fmt.Errorf("azuritetest: certificate directory: %w", err)
		}
		a.CertFile = filepath.Join(a.certDir, "cert.pem")
	}
	for attempt := 1; ; attempt++ {
		if a.ports, err = freePorts(); err != nil {
			return nil, err
		}
		err = a.start()
		if err == nil || !errors.Is(err, errAddrInUse) || attempt == startAttempts {
			break
		}
	}
	if err != nil {
		a.removeCertLocked()
		return nil, err
	}
	a.setURLs()
	return a, nil
}

// ModuleRoot returns the directory holding go.mod, found by walking up from
// the working directory (a test runs in its package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("azuritetest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("azuritetest: no go.mod above the working directory")
		}
		dir = parent
	}
}

func azuriteBin(root string) string {
	return filepath.Join(root, "node_modules", ".bin", "azurite")
}

func checkInstalled(root string) error {
	if _, err := os.Stat(azuriteBin(root)); err != nil {
		return fmt.Errorf("%w: run `npm ci` in %s", ErrNotInstalled, root)
	}
	// The script starts with #!/usr/bin/env node: without node it fails
	// at once with a message only the log would show.
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("%w: node is not on PATH (Azurite needs Node.js)", ErrNotInstalled)
	}
	return nil
}

// freePorts picks three distinct free loopback ports by listening on :0.
// Holding all three listeners until all are picked keeps them distinct; a
// port can still be taken before Azurite binds it, which Start retries.
func freePorts() ([3]int, error) {
	var ports [3]int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return ports, fmt.Errorf("azuritetest: picking a free port: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

func (a *Azurite) setURLs() {
	scheme := "http"
	if a.tls != nil {
		scheme = "https"
	}
	a.Account = AccountName
	if a.opts.Account != "" {
		a.Account = a.opts.Account
	}
	url := func(port int) string { return fmt.Sprintf("%s://127.0.0.1:%d/%s", scheme, port, a.Account) }
	a.BlobURL, a.QueueURL, a.TableURL = url(a.ports[0]), url(a.ports[1]), url(a.ports[2])
	a.ConnectionString = "DefaultEndpointsProtocol=" + scheme + ";AccountName=" + a.Account +
		";AccountKey=" + AccountKey +
		";BlobEndpoint=" + a.BlobURL +
		";QueueEndpoint=" + a.QueueURL +
		";TableEndpoint=" + a.TableURL + ";"
}

// errAddrInUse marks a start that failed because a port was taken.
var errAddrInUse = errors.New("address in use")

// start runs Azurite on a.ports and waits for it to be ready.
func (a *Azurite) start() error {
	a.mu.Lock()
	defer a.mu.Unlock()

	log, err := os.CreateTemp("", "azurite-*.log")
	if err != nil {
		return fmt.Errorf("azuritetest: creating log file: %w", err)
	}
	args := []string{
		"--skipApiVersionCheck", // the SDKs may speak a newer API version than this Azurite knows
		"--disableTelemetry",
		"--silent",
		"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(a.ports[0]),
		"--queueHost", "127.0.0.1", "--queuePort", strconv.Itoa(a.ports[1]),
		"--tableHost", "127.0.0.1", "--tablePort", strconv.Itoa(a.ports[2]),
	}
	dir := a.opts.Location
	if dir == "" {
		args = append(args, "--inMemoryPersistence")
		// Azurite still resolves a location (the working directory by
		// default); keep it out of the package under test.
		dir = os.TempDir()
	} else {
		args = append(args, "--location", dir)
	}
	if a.tls != nil {
		certFile, keyFile, err := a.tls.write(a.certDir)
		if err != nil {
			log.Close()
			os.Remove(log.Name())
			return err
		}
		args = append(args, "--cert", certFile, "--key", keyFile)
	}
	if a.opts.OAuth {
		args = append(args, "--oauth", "basic")
	}
	cmd := exec.Command(azuriteBin(a.root), args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = childEnv()
	if a.opts.Account != "" {
		cmd.Env = append(cmd.Env, "AZURITE_ACCOUNTS="+a.opts.Account+":"+AccountKey)
	}
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		log.Close()
		os.Remove(log.Name())
		return fmt.Errorf("azuritetest: starting %s: %w", azuriteBin(a.root), err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	a.proc, a.log, a.LogPath = p, log, log.Name()

	if err := a.waitReady(p.exited); err != nil {
		_ = a.stopLocked() // its only error is the exit we are reporting
		tail := a.tailLocked()
		a.removeLogLocked()
		if strings.Contains(tail, "EADDRINUSE") {
			err = fmt.Errorf("%w: %w", errAddrInUse, err)
		}
		return fmt.Errorf("azuritetest: starting Azurite on ports %v: %w\n--- Azurite log (tail) ---\n%s", a.ports, err, tail)
	}
	return nil
}

// childEnv is the environment without AZURITE_ACCOUNTS, which would
// replace the well-known account the connection string names.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AZURITE_ACCOUNTS=") {
			env = append(env, kv)
		}
	}
	return env
}

// waitReady polls the three ports until all accept, the process exits, or
// readyTimeout passes. Table starts last, but all three are checked so that
// no ordering inside Azurite is assumed.
func (a *Azurite) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	for _, port := range a.ports {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-exited:
				return errors.New("Azurite exited before it was ready")
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("port %d not accepting after %v", port, readyTimeout)
			}
		}
	}
	return nil
}

// Stop stops Azurite: SIGTERM to its process group, so that a persistent
// location is saved, then SIGKILL after 10 s. It removes the log file and
// an HTTPS Azurite's certificate files. It fails only if Azurite had
// already exited on its own, quoting its log. It is safe to call twice;
// later calls do nothing and return nil.
func (a *Azurite) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.stopLocked()
	if err != nil {
		err = fmt.Errorf("%w\n--- Azurite log (tail) ---\n%s", err, a.tailLocked())
	}
	a.removeLogLocked()
	a.removeCertLocked()
	return err
}

// removeCertLocked removes the certificate files; start writes them again.
func (a *Azurite) removeCertLocked() {
	if a.certDir != "" {
		os.RemoveAll(a.certDir)
	}
}

func (a *Azurite) stopLocked() error {
	p := a.proc
	if p == nil {
		return nil
	}
	a.proc = nil
	var err error
	select {
	case <-p.exited:
		err = fmt.Errorf("azuritetest: Azurite had exited before Stop: %v", p.err)
	default:
		terminate(p.cmd)
		select {
		case <-p.exited:
		case <-time.After(stopTimeout):
			kill(p.cmd)
			<-p.exited
		}
	}
	// Whatever the main process left behind in its group goes too.
	kill(p.cmd)
	return err
}

func (a *Azurite) tailLocked() string {
	if a.log == nil {
		return ""
	}
	b, err := os.ReadFile(a.log.Name())
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", a.log.Name(), err)
	}
	if len(b) > logTail {
		b = b[len(b)-logTail:]
	}
	return string(bytes.TrimSpace(b))
}

func (a *Azurite) removeLogLocked() {
	if a.log == nil {
		return
	}
	a.log.Close()
	os.Remove(a.log.Name())
	a.log = nil
}

// Restart stops Azurite and starts it again on the same ports, so that
// clients built from the URLs keep working. With a Location the data
// survives; in memory it is lost. Restart after Stop starts it again.
// It retries a few times if a port is briefly unavailable.
func (a *Azurite) Restart() error {
	if err := a.Stop(); err != nil {
		return err
	}
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		if err = a.start(); err == nil || !errors.Is(err, errAddrInUse) {
			return err
		}
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
	return err
}

// Log returns the tail of Azurite's output, for a failing test to quote.
func (a *Azurite) Log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tailLocked()
}
