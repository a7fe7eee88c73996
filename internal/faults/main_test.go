package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
)

// chaosEnv enables the slow cases; `make chaos` sets it.
const chaosEnv = "KVAUDIT_CHAOS"

func TestMain(m *testing.M) {
	code := azuritetest.Main(m)
	printTable()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// slow skips a case unless the chaos cases are enabled.
func slow(t *testing.T) {
	t.Helper()
	if os.Getenv(chaosEnv) != "1" {
		t.Skipf("slow fault case: `make chaos` runs it (%s=1)", chaosEnv)
	}
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// handlerBinary builds ./handler once per test binary, without -race (the
// subprocess is the system under test, not the test), and returns its path.
func handlerBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := azuritetest.ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		if binDir, err = os.MkdirTemp("", "kvaudit-faults-*"); err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(binDir, "handler")
		cmd := exec.Command("go", "build", "-o", binPath, "./handler")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./handler: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// figures is one row of the fault table the suite prints at the end.
type figures struct {
	Case     string
	Fault    string
	Written  int // records appended to the blobs
	Distinct int // distinct correlation ids in Events
	Rows     int // Events rows (Distinct plus duplicates)
	Stats    int64
	Retries  int // invocations the host had to repeat (non-200 or cut)
	Races    int // checkpoint races lost and reconciled (handler log)
	Duration time.Duration
	Result   string
	Note     string
}

var (
	tableMu sync.Mutex
	table   []figures
)

func report(f figures) {
	tableMu.Lock()
	defer tableMu.Unlock()
	table = append(table, f)
}

func printTable() {
	tableMu.Lock()
	defer tableMu.Unlock()
	if len(table) == 0 {
		return
	}
	sort.SliceStable(table, func(i, j int) bool { return table[i].Case < table[j].Case })
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tresult\twritten\tdistinct\trows\tstats\tretries\traces\tduration\tnote")
	for _, f := range table {
		if len(f.Note) > 400 {
			f.Note = f.Note[:400] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", f.Case, f.Result, f.Written, f.Distinct, f.Rows, f.Stats,
			f.Retries, f.Races, f.Duration.Round(100*time.Millisecond), f.Note)
	}
	tw.Flush()
	fmt.Printf("\n--- fault table ---\n%s\n", b.String())
}
