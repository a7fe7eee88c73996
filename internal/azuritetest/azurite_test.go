package azuritetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
)

const helperEnv = "AZURITETEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		orphanHelper()
		return
	}
	os.Exit(Main(m))
}

func TestSharedSDK(t *testing.T) {
	az := Require(t)
	if Shared() != az {
		t.Fatal("Shared() is not the instance Require returned")
	}
	ctx := context.Background()
	tables, err := aztables.NewServiceClientFromConnectionString(az.ConnectionString, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tables.CreateTable(ctx, "sharedsdk", nil); err != nil {
		t.Fatalf("CreateTable: %v\n%s", err, az.Log())
	}
	blobs, err := azblob.NewClientFromConnectionString(az.ConnectionString, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.CreateContainer(ctx, "sharedsdk", nil); err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, az.Log())
	}
	if !strings.HasSuffix(az.BlobURL, "/"+AccountName) || !strings.Contains(az.ConnectionString, "TableEndpoint="+az.TableURL+";") {
		t.Errorf("URLs: %q, %q", az.BlobURL, az.ConnectionString)
	}
}

// TestRestartPersistent checks that a container and a table survive a
// restart with a location, on the same URLs, and that Stop can be repeated.
func TestRestartPersistent(t *testing.T) {
	Require(t)
	az, err := Start(Options{Location: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer az.Stop()
	ctx := context.Background()
	blobs, err := azblob.NewClientFromConnectionString(az.ConnectionString, nil)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := aztables.NewServiceClientFromConnectionString(az.ConnectionString, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.CreateContainer(ctx, "survivor", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tables.CreateTable(ctx, "survivor", nil); err != nil {
		t.Fatal(err)
	}
	before := az.BlobURL

	start := time.Now()
	if err := az.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart took %v", time.Since(start).Round(time.Millisecond))
	if az.BlobURL != before {
		t.Errorf("BlobURL changed over Restart: %q → %q", before, az.BlobURL)
	}
	// The clients built before the restart still work: same ports.
	if _, err := blobs.ServiceClient().NewContainerClient("survivor").GetProperties(ctx, nil); err != nil {
		t.Errorf("container lost over Restart: %v", err)
	}
	if _, err := tables.NewClient("survivor").GetAccessPolicy(ctx, nil); err != nil {
		t.Errorf("table lost over Restart: %v", err)
	}

	if err := az.Stop(); err != nil {
		t.Errorf("first Stop: %v", err)
	}
	if err := az.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(strings.TrimSuffix(az.BlobURL, "/"+AccountName), "http://"), time.Second); err == nil {
		conn.Close()
		t.Error("blob port still accepting after Stop")
	}
	if _, err := os.Stat(az.LogPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("log file %s not removed by Stop: %v", az.LogPath, err)
	}
}

// TestRestartInMemory checks the documented loss of data without a location.
func TestRestartInMemory(t *testing.T) {
	Require(t)
	az, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer az.Stop()
	ctx := context.Background()
	blobs, err := azblob.NewClientFromConnectionString(az.ConnectionString, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.CreateContainer(ctx, "ephemeral", nil); err != nil {
		t.Fatal(err)
	}
	if err := az.Restart(); err != nil {
		t.Fatal(err)
	}
	_, err = blobs.ServiceClient().NewContainerClient("ephemeral").GetProperties(ctx, nil)
	if !bloberror.HasCode(err, bloberror.ContainerNotFound) {
		t.Errorf("after an in-memory Restart: err = %v, want ContainerNotFound", err)
	}
}

// TestChildDiesWithParent kills a test binary that started Azurite without
// stopping it, and checks Azurite goes too.
func TestChildDiesWithParent(t *testing.T) {
	Require(t)
	if runtime.GOOS != "linux" {
		t.Skip("relies on Pdeathsig")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var addr string
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "BLOB "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		cmd.Wait()
		t.Fatal("helper did not report Azurite's address")
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper: %v, want killed by SIGKILL", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return // Azurite is gone
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("Azurite at %s still accepting 10 s after its parent died", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// orphanHelper starts Azurite, reports its blob address, and dies by
// SIGKILL without stopping it, as a test binary on -timeout or ^C would.
func orphanHelper() {
	az, err := Start(Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("BLOB 127.0.0.1:%s\n", strconv.Itoa(az.ports[0]))
	os.Remove(az.LogPath) // the one thing Stop would have cleaned up
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root + "/go.mod"); err != nil {
		t.Errorf("ModuleRoot() = %q: %v", root, err)
	}
}

// TestMainNotInstalled runs this test binary from a module without
// node_modules: Require must skip, naming the command to run, unless
// Azurite is required, when Main must fail before any test runs.
func TestMainNotInstalled(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(root+"/go.mod", []byte("module example.com/empty\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(extra ...string) []string {
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "CI=") && !strings.HasPrefix(kv, "KVAUDIT_REQUIRE_AZURITE=") {
				env = append(env, kv)
			}
		}
		return append(env, extra...)
	}
	want := "azuritetest: Azurite not installed: run `npm ci` in " + root

	cmd := exec.Command(os.Args[0], "-test.run=^TestSharedSDK$", "-test.v")
	cmd.Dir, cmd.Env = root, env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("not required: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- SKIP: TestSharedSDK") || !strings.Contains(string(out), want) {
		t.Errorf("not required: want a skip saying %q, got\n%s", want, out)
	}

	for _, required := range []string{"CI=true", "KVAUDIT_REQUIRE_AZURITE=1"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSharedSDK$", "-test.v")
		cmd.Dir, cmd.Env = root, env(required)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("%s: err = %v, want exit status 1", required, err)
		}
		if !strings.Contains(string(out), want) || strings.Contains(string(out), "TestSharedSDK") {
			t.Errorf("%s: want %q and no test run, got\n%s", required, want, out)
		}
	}
}

// TestStartPortTaken checks that a port taken between picking and binding
// is recognised, which is what Start and Restart retry on.
func TestStartPortTaken(t *testing.T) {
	Require(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	free, err := freePorts()
	if err != nil {
		t.Fatal(err)
	}
	a := &Azurite{root: root, ports: [3]int{l.Addr().(*net.TCPAddr).Port, free[1], free[2]}}
	err = a.start()
	if err == nil {
		a.Stop()
		t.Fatal("Azurite started on a taken port")
	}
	if !errors.Is(err, errAddrInUse) || !strings.Contains(err.Error(), "EADDRINUSE") {
		t.Errorf("err = %v, want errAddrInUse quoting the log", err)
	}
	if err := a.Stop(); err != nil {
		t.Errorf("Stop after a failed start: %v", err)
	}
}

// TestKillRestart checks that Restart after Kill serves again on the same
// URLs, with a persistent location.
func TestKillRestart(t *testing.T) {
	Require(t)
	az, err := Start(Options{Location: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer az.Stop()
	url := az.TableURL
	az.Kill()
	az.Kill() // safe twice
	if err := az.Restart(); err != nil {
		t.Fatal(err)
	}
	if az.TableURL != url {
		t.Fatalf("TableURL %q after restart, was %q", az.TableURL, url)
	}
	tables, err := aztables.NewServiceClientFromConnectionString(az.ConnectionString, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tables.CreateTable(context.Background(), "afterkill", nil); err != nil {
		t.Fatalf("CreateTable after Kill and Restart: %v", err)
	}
}

// TestAccountOfItsOwn checks that Options.Account gives an Azurite serving
// that account, as a second logs account in its own region would be, and
// not devstoreaccount1.
func TestAccountOfItsOwn(t *testing.T) {
	Require(t)
	az, err := Start(Options{Account: "logstwo"})
	if err != nil {
		t.Fatal(err)
	}
	defer az.Stop()
	if az.Account != "logstwo" || !strings.HasSuffix(az.BlobURL, "/logstwo") || !strings.Contains(az.ConnectionString, "AccountName=logstwo;") {
		t.Fatalf("account %q, URLs %q", az.Account, az.ConnectionString)
	}
	ctx := context.Background()
	blobs, err := azblob.NewClientFromConnectionString(az.ConnectionString, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.CreateContainer(ctx, "logs", nil); err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, az.Log())
	}
	dev := strings.ReplaceAll(az.ConnectionString, "logstwo", AccountName)
	other, err := azblob.NewClientFromConnectionString(dev, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.CreateContainer(ctx, "logs", nil); err == nil {
		t.Error("the Azurite of logstwo serves devstoreaccount1 too")
	}
}
