// Command package writes dist/kvaudit.zip, the Functions app as Azure runs
// it, and nothing else: host.json, the function folders and the handler
// binary at the path host.json names.
//
//	go run ./tools/package -o dist/kvaudit.zip -dir dist/kvaudit
//
// (make package runs it; so does azd's prepackage hook.) It builds the
// handler with GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -trimpath
// (-handler names an already built one instead). The zip is reproducible: entries are sorted,
// every time stamp is the same fixed instant and modes are explicit (0755
// for the handler, 0644 for the rest), so the same commit gives the same
// bytes.
//
// The package is notified of new blobs by EventGridTrigger alone (issue
// 17): an Event Grid trigger takes BlobCreated from the system topic of
// every logs account, one per region, where a blob trigger binds one
// connection. BlobTrigger stays in the repository for local runs (func
// start with Azurite polls its container), not in the package.
//
// With -dir, the same files are also written unpacked to that folder, from
// which func azure functionapp publish <app> --custom can upload them.
package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Functions are the function folders the package carries. CatchUp is not
// optional: Event Grid raises BlobCreated once per PT1H.json and nothing
// for its appends; CatchUp follows them.
var Functions = []string{"CatchUp", "EventGridTrigger", "HttpQuery"}

// HostFile is the host's configuration, at the package root.
const HostFile = "host.json"

// ModTime is every entry's modification time: fixed, so that the bytes
// depend on the content alone.
var ModTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// File is one entry of the package.
type File struct {
	Name string      // slash-separated path in the zip
	Mode fs.FileMode // 0755 for the handler, 0644 otherwise
	Data []byte
}

func main() {
	root := flag.String("root", ".", "repository root: host.json and the function folders")
	handler := flag.String("handler", "", "a linux/amd64 handler binary already built (default: build ./handler into "+BuiltHandler+")")
	out := flag.String("o", "dist/kvaudit.zip", "zip to write")
	dir := flag.String("dir", "", "also write the files unpacked to this folder (emptied first)")
	flag.Parse()
	if *handler == "" {
		*handler = filepath.Join(*root, filepath.FromSlash(BuiltHandler))
		if err := BuildHandler(*root, *handler); err != nil {
			fmt.Fprintf(os.Stderr, "package: %v\n", err)
			os.Exit(1)
		}
	}
	if err := run(*root, *handler, *out, *dir, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "package: %v\n", err)
		os.Exit(1)
	}
}

// BuiltHandler is where the handler is built, relative to the root.
const BuiltHandler = "dist/linux-amd64/handler"

// BuildHandler builds root's ./handler for the Functions Linux workers:
// linux/amd64, static (CGO_ENABLED=0), without local paths (-trimpath),
// whatever this machine is.
func BuildHandler(root, out string) error {
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", abs, "./handler")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./handler for linux/amd64: %v\n%s", err, out)
	}
	return nil
}

func run(root, handler, out, dir string, stdout io.Writer) error {
	files, err := Collect(root, handler)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := WriteZip(&buf, files); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	if dir != "" {
		if err := WriteDir(dir, files); err != nil {
			return err
		}
	}
	sum := sha256.Sum256(buf.Bytes())
	for _, f := range files {
		fmt.Fprintf(stdout, "  %v %9d %s\n", f.Mode, len(f.Data), f.Name)
	}
	fmt.Fprintf(stdout, "%s  %s (%d bytes, %d files)\n", hex.EncodeToString(sum[:]), out, buf.Len(), len(files))
	return nil
}

// Collect reads the package's files from root, sorted by name: host.json,
// every regular file of each function folder and handler as the
// executable host.json names.
func Collect(root, handler string) ([]File, error) {
	hostJSON, err := os.ReadFile(filepath.Join(root, HostFile))
	if err != nil {
		return nil, err
	}
	exe, err := ExecutablePath(hostJSON)
	if err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(handler)
	if err != nil {
		return nil, fmt.Errorf("handler binary: %w", err)
	}
	files := []File{
		{Name: HostFile, Mode: 0o644, Data: hostJSON},
		{Name: exe, Mode: 0o755, Data: bin},
	}
	for _, fn := range Functions {
		entries, err := os.ReadDir(filepath.Join(root, fn))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !e.Type().IsRegular() {
				return nil, fmt.Errorf("%s/%s: only regular files belong in a function folder", fn, e.Name())
			}
			data, err := os.ReadFile(filepath.Join(root, fn, e.Name()))
			if err != nil {
				return nil, err
			}
			name := fn + "/" + e.Name()
			files = append(files, File{Name: name, Mode: 0o644, Data: data})
		}
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return files, nil
}

// ExecutablePath is customHandler.description.defaultExecutablePath of a
// host.json, as a clean relative path.
func ExecutablePath(hostJSON []byte) (string, error) {
	var h struct {
		CustomHandler struct {
			Description struct {
				DefaultExecutablePath string `json:"defaultExecutablePath"`
			} `json:"description"`
		} `json:"customHandler"`
	}
	if err := json.Unmarshal(hostJSON, &h); err != nil {
		return "", fmt.Errorf("host.json: %w", err)
	}
	p := h.CustomHandler.Description.DefaultExecutablePath
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "..") {
		return "", fmt.Errorf("host.json: defaultExecutablePath %q is not a relative path inside the app", p)
	}
	return p, nil
}

// WriteZip writes files to w as a zip whose bytes depend on files alone.
func WriteZip(w io.Writer, files []File) error {
	zw := zip.NewWriter(w)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.Name, Method: zip.Deflate, Modified: ModTime}
		h.SetMode(f.Mode) // Unix creator, so the mode (exec bit) is kept
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := fw.Write(f.Data); err != nil {
			return err
		}
	}
	return zw.Close()
}

// WriteDir writes files under dir, with their modes, after removing
// whatever dir held.
func WriteDir(dir string, files []File) error {
	if dir == "" || dir == "." || dir == "/" {
		return errors.New("refusing to empty " + dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, f.Mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.Mode); err != nil { // umask must not drop the exec bit
			return err
		}
	}
	return nil
}
