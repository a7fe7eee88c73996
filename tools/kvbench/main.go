// Command kvbench measures kvaudit against the targets of its performance
// issue and prints one table of the figures and the machine they ran on.
// `make bench` runs it from the module root.
//
//	kvbench [-quick] [-only parse,memory,ingest,query,lookup,start,cost,alert] [flags]
//	kvbench naive FILE      the parse baseline: encoding/json per line, map[string]any
//	kvbench gen -mb N FILE  write N MB of generated audit records (JSON Lines)
//
// It starts its own Azurite (azuritetest.Start, free loopback ports), builds
// bin/handler, and drives the handler as a child process the way the
// Functions host does. Everything it writes goes to a temporary directory
// that it removes, and to Azurite, which it stops. Every loop is bounded in
// count and time; all traffic stays on 127.0.0.1.
//
// The machine is shared and noisy: figures are medians of several runs, and
// each comparison (parse vs baseline, writer vs bare loop) is made within one
// run, alternating the two sides.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "naive":
			os.Exit(runNaive(os.Args[2:], os.Stdout, os.Stderr))
		case "gen":
			os.Exit(runGen(os.Args[2:]))
		}
	}
	os.Exit(run(os.Args[1:]))
}

// options are kvbench's flags.
type options struct {
	quick         bool
	only          map[string]bool
	runs          int
	parseMB       int
	memMiB        int
	ingestRecords int
	blobRecords   int
	concurrency   int
	queryEvents   int
	queryRequests int
	startRuns     int
	azuriteHeap   int
	verbose       bool
	keep          bool
	handlerBin    string
}

var measurements = []string{"parse", "memory", "ingest", "query", "lookup", "start", "cost", "alert"}

func run(args []string) int {
	fs := flag.NewFlagSet("kvbench", flag.ContinueOnError)
	var o options
	only := fs.String("only", strings.Join(measurements, ","), "measurements to run, comma-separated")
	fs.BoolVar(&o.quick, "quick", false, "small sizes for a quick look (the figures are then not the targets')")
	fs.IntVar(&o.runs, "runs", 3, "runs per whole-process parse figure and ingest comparison")
	fs.IntVar(&o.parseMB, "parse-mb", 100, "size of the parse input, MB")
	fs.IntVar(&o.memMiB, "mem-mib", 256, "size of the blob of the memory measurement, MiB")
	fs.IntVar(&o.ingestRecords, "ingest-records", 12000, "records per ingest comparison run")
	fs.IntVar(&o.blobRecords, "blob-records", 3000, "records per blob in the ingest comparison")
	fs.IntVar(&o.concurrency, "concurrency", 8, "transactions in flight (IngestConcurrency, and the bare loop's)")
	fs.IntVar(&o.queryEvents, "query-events", 100000, "events loaded for the query measurement (the issue's figure is 1000000)")
	fs.IntVar(&o.queryRequests, "query-requests", 200, "requests per query kind under load")
	fs.IntVar(&o.startRuns, "start-runs", 10, "handler starts timed")
	fs.IntVar(&o.azuriteHeap, "azurite-heap-mib", 10240, "V8 heap limit of the Azurite kvbench starts (it holds every row in memory)")
	fs.BoolVar(&o.verbose, "v", false, "progress on stderr")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory")
	fs.StringVar(&o.handlerBin, "handler", "", "use this handler binary instead of building bin/handler")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.only = map[string]bool{}
	for _, m := range strings.Split(*only, ",") {
		m = strings.TrimSpace(m)
		if !slices.Contains(measurements, m) {
			fmt.Fprintf(os.Stderr, "kvbench: unknown measurement %q (want %s)\n", m, strings.Join(measurements, ","))
			return 2
		}
		o.only[m] = true
	}
	if o.quick {
		o.parseMB, o.memMiB, o.ingestRecords, o.blobRecords = 20, 32, 6000, 1500
		o.queryEvents, o.queryRequests, o.startRuns = 10000, 50, 5
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := newBench(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvbench:", err)
		return 1
	}
	defer b.close()
	rep := b.runAll(ctx)
	rep.print(os.Stdout)
	if rep.failed {
		return 1
	}
	return 0
}

// bench is one kvbench run: its directories, binaries and Azurite.
type bench struct {
	o        options
	root     string // module root
	tmp      string
	handler  string // bin/handler
	self     string // this program, for `kvbench naive`
	az       *azuritetest.Azurite
	machine  machine
	samples  []template
	memFig   *memFigures
	quietFig *quietFigures
	logf     func(format string, args ...any)
}

func newBench(o options) (*bench, error) {
	root, err := azuritetest.ModuleRoot()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	samples, err := loadTemplates(root)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "kvbench-*")
	if err != nil {
		return nil, err
	}
	b := &bench{o: o, root: root, tmp: tmp, self: self, samples: samples, handler: filepath.Join(root, "bin", "handler")}
	if o.handlerBin != "" {
		if b.handler, err = filepath.Abs(o.handlerBin); err != nil {
			return nil, err
		}
	}
	b.logf = func(format string, args ...any) {
		if o.verbose {
			fmt.Fprintf(os.Stderr, "kvbench: "+format+"\n", args...)
		}
	}
	b.machine = readMachine(root)
	return b, nil
}

func (b *bench) close() {
	if b.az != nil {
		if err := b.az.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "kvbench: stopping Azurite:", err)
		}
	}
	if !b.o.keep {
		os.RemoveAll(b.tmp)
	} else {
		fmt.Fprintln(os.Stderr, "kvbench: kept", b.tmp)
	}
}

// buildHandler builds bin/handler as `make build` does.
func (b *bench) buildHandler(ctx context.Context) error {
	if b.o.handlerBin != "" {
		return nil
	}
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", b.handler, "./handler")
	cmd.Dir = b.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./handler: %v\n%s", err, out)
	}
	return nil
}

// azurite starts Azurite on first use.
func (b *bench) azurite() (*azuritetest.Azurite, error) {
	if b.az != nil {
		return b.az, nil
	}
	// Azurite keeps every entity in its V8 heap; the memory measurement
	// alone writes over a million rows, more than the default limit holds.
	if b.o.azuriteHeap > 0 {
		opt := fmt.Sprintf("--max-old-space-size=%d", b.o.azuriteHeap)
		os.Setenv("NODE_OPTIONS", strings.TrimSpace(os.Getenv("NODE_OPTIONS")+" "+opt))
	}
	az, err := azuritetest.Start(azuritetest.Options{})
	if err != nil {
		return nil, err
	}
	b.az = az
	return az, nil
}

func (b *bench) runAll(ctx context.Context) *report {
	rep := &report{machine: b.machine, started: time.Now()}
	if err := b.buildHandler(ctx); err != nil {
		rep.fail("build", err)
		return rep
	}
	type step struct {
		name string
		fn   func(context.Context, *report) error
	}
	var ing *ingestFigures
	steps := []step{
		{"start", b.measureStart},
		{"parse", b.measureParse},
		{"parse", b.measureMicro},
		{"ingest", func(ctx context.Context, r *report) (err error) { ing, err = b.measureIngest(ctx, r); return err }},
		{"memory", b.measureMemory},
		{"query", b.measureQuery},
		{"lookup", b.measureLookup},
		{"cost", func(ctx context.Context, r *report) error { return b.measureCost(ctx, r, ing) }},
		{"alert", b.measureAlerts},
	}
	for _, s := range steps {
		if !b.o.only[s.name] {
			continue
		}
		if ctx.Err() != nil {
			rep.fail(s.name, ctx.Err())
			continue
		}
		b.logf("%s …", s.name)
		t0 := time.Now()
		if err := s.fn(ctx, rep); err != nil {
			rep.fail(s.name, err)
		}
		b.logf("%s done in %s", s.name, time.Since(t0).Round(time.Second))
	}
	rep.elapsed = time.Since(rep.started)
	return rep
}

// runGen implements `kvbench gen -mb N FILE`.
func runGen(args []string) int {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	mb := fs.Int("mb", 100, "size in MB")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: kvbench gen -mb N FILE")
		return 2
	}
	root, err := azuritetest.ModuleRoot()
	if err == nil {
		var ts []template
		if ts, err = loadTemplates(root); err == nil {
			_, _, err = writeParseInput(ts, fs.Arg(0), int64(*mb)*1e6)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvbench gen:", err)
		return 1
	}
	return 0
}
