package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/funchost/hosttest"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
)

func TestMain(m *testing.M) {
	code := azuritetest.Main(m)
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// wantEntries is the whole package: what the Functions host needs, and
// nothing else.
var wantEntries = []string{
	"CatchUp/function.json",
	"EventGridTrigger/function.json",
	"HttpQuery/function.json",
	"bin/handler",
	"host.json",
}

// built is the package as make package builds it, made once per test
// binary: the handler for linux/amd64, then the zip, twice, by this
// command built without -race (compressing 19 MB under the race detector
// would take most of the test's time, and the command is what ships).
var built struct {
	once       sync.Once
	root, dir  string
	zip, again []byte
	err        error
}

func buildPackage(t *testing.T) (root string, zipBytes []byte) {
	t.Helper()
	built.once.Do(func() { built.err = makePackage() })
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.root, built.zip
}

func makePackage() error {
	root, err := azuritetest.ModuleRoot()
	if err != nil {
		return err
	}
	built.root = root
	if built.dir, err = os.MkdirTemp("", "kvaudit-package-"); err != nil {
		return err
	}
	handler := filepath.Join(built.dir, "handler")
	if err := BuildHandler(root, handler); err != nil {
		return err
	}
	tool := filepath.Join(built.dir, "package")
	cmd := exec.Command("go", "build", "-o", tool, "./tools/package")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./tools/package: %v\n%s", err, out)
	}
	for i, dst := range []*[]byte{&built.zip, &built.again} {
		out := filepath.Join(built.dir, fmt.Sprintf("kvaudit-%d.zip", i))
		cmd := exec.Command(tool, "-root", root, "-handler", handler, "-o", out)
		msg, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("package: %v\n%s", err, msg)
		}
		if *dst, err = os.ReadFile(out); err != nil {
			return err
		}
		// make package prints the zip's sha256 first on its last line.
		lines := strings.Split(strings.TrimSpace(string(msg)), "\n")
		sum := sha256.Sum256(*dst)
		if printed := strings.Fields(lines[len(lines)-1])[0]; printed != hex.EncodeToString(sum[:]) {
			return fmt.Errorf("package printed sha256 %s, the zip's is %x", printed, sum)
		}
	}
	return nil
}

func TestPackageIsReproducible(t *testing.T) {
	_, z := buildPackage(t)
	if !bytes.Equal(z, built.again) {
		t.Fatal("two packages of the same tree differ")
	}
}

func TestPackageEntries(t *testing.T) {
	root, z := buildPackage(t)
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	files := map[string][]byte{}
	for _, f := range zr.File {
		names = append(names, f.Name)
		want := os.FileMode(0o644)
		if f.Name == "bin/handler" {
			want = 0o755
		}
		if f.Mode() != want {
			t.Errorf("%s: mode %v, want %v", f.Name, f.Mode(), want)
		}
		if !f.Modified.Equal(ModTime) {
			t.Errorf("%s: modified %v, want the fixed %v", f.Name, f.Modified, ModTime)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name], err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(names, wantEntries) {
		t.Fatalf("entries %q, want %q", names, wantEntries)
	}

	exe, err := ExecutablePath(files["host.json"])
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files[exe]; !ok {
		t.Errorf("host.json's defaultExecutablePath %q is not in the package", exe)
	}
	checkStaticLinuxAMD64(t, files["bin/handler"])

	// The notification is the Event Grid trigger (every logs account's
	// system topic delivers to it); the blob trigger, bound to one
	// connection, is for local runs only.
	var eg struct{ Bindings []map[string]any }
	if err := json.Unmarshal(files["EventGridTrigger/function.json"], &eg); err != nil {
		t.Fatal(err)
	}
	if len(eg.Bindings) != 1 || eg.Bindings[0]["type"] != "eventGridTrigger" || eg.Bindings[0]["name"] != "eventGridEvent" || eg.Bindings[0]["dataType"] != nil {
		t.Errorf("EventGridTrigger bindings %v: want one eventGridTrigger named eventGridEvent, no dataType (the event arrives as its JSON text)", eg.Bindings)
	}
	for _, fn := range []string{"CatchUp", "EventGridTrigger", "HttpQuery"} {
		b, err := os.ReadFile(filepath.Join(root, fn, "function.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, files[fn+"/function.json"]) {
			t.Errorf("%s/function.json is not the checked-in one", fn)
		}
	}
}

// checkStaticLinuxAMD64 fails unless bin is a 64-bit x86-64 ELF executable
// with no interpreter and no shared libraries: what runs on the Functions
// Linux workers whatever their libc.
func checkStaticLinuxAMD64(t *testing.T, bin []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("bin/handler is not ELF: %v", err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		t.Errorf("bin/handler: class %v machine %v type %v, want ELFCLASS64 EM_X86_64 ET_EXEC", f.Class, f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("bin/handler has a %v program header: dynamically linked", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		t.Errorf("bin/handler needs shared libraries %q", libs)
	}
}

// TestPackagedHandlerIndexesABlob unpacks the zip, starts its bin/handler
// as the host does (FUNCTIONS_CUSTOMHANDLER_PORT, the app folder as working
// directory), sends it the host's blob-trigger invocation for a blob in
// Azurite and reads the event back through the query API.
func TestPackagedHandlerIndexesABlob(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the package's handler is linux/amd64; this machine is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	_, z := buildPackage(t)
	app := t.TempDir()
	unzip(t, z, app)

	env := ingesttest.New(t)
	az := azuritetest.Require(t)
	containerURL, err := url.Parse(env.Container.URL())
	if err != nil {
		t.Fatal(err)
	}
	container := path.Base(containerURL.Path)
	hour := time.Now().UTC().Truncate(time.Hour)
	name := ingesttest.BlobName("pkgvault", hour)
	const n = 3
	env.Append(name, true, ingesttest.Records("pkgvault", hour.Add(time.Minute), 0, n))

	port := freePort(t)
	cmd := exec.Command(filepath.Join(app, "bin", "handler"))
	cmd.Dir = app
	cmd.Env = append(os.Environ(),
		config.SettingCustomPort+"="+strconv.Itoa(port),
		config.SettingLogsStorage+"="+az.ConnectionString,
		config.SettingLogsContainer+"="+container,
		config.SettingTablePrefix+"="+env.Tables.Name(""),
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Ready when it says it listens (or fail when it exits first).
	sc := bufio.NewScanner(stderr)
	var log strings.Builder
	for !strings.Contains(log.String(), `"msg":"listening"`) {
		if !sc.Scan() {
			t.Fatalf("handler exited before listening:\n%s", log.String())
		}
		log.WriteString(sc.Text() + "\n")
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()

	base := "http://127.0.0.1:" + strconv.Itoa(port)
	content := ingesttest.Records("pkgvault", hour.Add(time.Minute), 0, n)
	// The packaged notification: a BlobCreated event as the host hands
	// the Event Grid trigger's invocation over.
	req, err := hosttest.NewEventGridRequest(context.Background(), base, hosttest.EventGridInvocation{
		Name: name, Container: container, AccountURL: az.BlobURL, ContentLength: int64(len(content)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if status, resp, err := hosttest.Do(nil, req); err != nil || status != http.StatusOK || !strings.Contains(strings.Join(resp.Logs, " "), fmt.Sprintf("indexed %d records", n)) {
		t.Fatalf("EventGridTrigger: %d %v %v", status, resp.Logs, err)
	}

	q := url.Values{"vault": {"pkgvault"}, "from": {hour.Format(time.RFC3339)}, "to": {hour.Add(time.Hour).Format(time.RFC3339)}}
	resp, err := http.Get(base + "/api/audit/events?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Events []struct {
			OperationName string `json:"operationName"`
			Source        struct {
				Blob string `json:"blob"`
			} `json:"source"`
		} `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %d %v", resp.StatusCode, err)
	}
	if len(body.Events) != n {
		t.Fatalf("got %d events back, want %d", len(body.Events), n)
	}
	if e := body.Events[0]; e.OperationName != "SecretGet" || e.Source.Blob != name {
		t.Errorf("event = %+v", e)
	}
}

func unzip(t *testing.T, z []byte, dir string) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		// The zip's mode, as the platform's unzip keeps it: the exec bit
		// must come from the package, not from this test.
		if err := os.WriteFile(p, data, f.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// .funcignore leaves exactly the package's files for func publish from the
// repository root. The matcher reads the subset of gitignore syntax the
// file uses: "name/" excludes directories of that name anywhere, other
// lines are globs on a file's base name.
func TestFuncignoreLeavesThePackage(t *testing.T) {
	root, err := azuritetest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, ".funcignore"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs, globs []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "!") || strings.Contains(strings.TrimSuffix(line, "/"), "/"):
			t.Fatalf(".funcignore: %q: this test reads only names and globs", line)
		case strings.HasSuffix(line, "/"):
			dirs = append(dirs, strings.TrimSuffix(line, "/"))
		default:
			globs = append(globs, line)
		}
	}
	ignored := func(name string) bool {
		for _, g := range globs {
			if ok, _ := path.Match(g, name); ok {
				return true
			}
		}
		return false
	}
	var kept []string
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		// A symlink to a folder (node_modules, .tools in a worktree) counts
		// as the folder.
		dirLike := d.IsDir() || d.Type()&fs.ModeSymlink != 0
		if dirLike && slices.Contains(dirs, d.Name()) || ignored(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			kept = append(kept, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := wantEntries
	if !slices.Contains(kept, "bin/handler") { // make build has not run here
		want = slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == "bin/handler" })
	}
	slices.Sort(kept)
	if !slices.Equal(kept, want) {
		t.Errorf("func publish from the root would upload %q, want %q", kept, want)
	}
}

// dist/kvaudit (for func publish) holds the zip's files with the zip's
// modes, whatever the umask.
func TestWriteDirKeepsModes(t *testing.T) {
	files := []File{
		{Name: "bin/handler", Mode: 0o755, Data: []byte("\x7fELF")},
		{Name: "host.json", Mode: 0o644, Data: []byte("{}")},
	}
	dir := filepath.Join(t.TempDir(), "kvaudit")
	if err := os.MkdirAll(filepath.Join(dir, "stale"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(dir, files); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stale")); !os.IsNotExist(err) {
		t.Errorf("WriteDir kept what the folder held before: %v", err)
	}
	for _, f := range files {
		st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f.Name)))
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && st.Mode().Perm() != f.Mode {
			t.Errorf("%s: mode %v, want %v", f.Name, st.Mode().Perm(), f.Mode)
		}
	}
}
