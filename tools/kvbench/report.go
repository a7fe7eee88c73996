package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// row is one line of the table.
type row struct {
	target  string // "1 parse" …
	what    string
	result  string
	goal    string
	verdict string
}

// report collects the rows and notes of a run.
type report struct {
	machine machine
	started time.Time
	elapsed time.Duration
	rows    []row
	notes   []string
	failed  bool
}

func (r *report) add(target, what, result, goal, verdict string) {
	r.rows = append(r.rows, row{target, what, result, goal, verdict})
}

func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *report) fail(target string, err error) {
	r.failed = true
	r.add(target, "error", strings.ReplaceAll(err.Error(), "\n", " "), "", "FAILED")
}

// verdict says whether got meets a goal, and by how much it misses.
func verdictAtLeast(got, goal float64, unit string) string {
	if got >= goal {
		return "met"
	}
	return fmt.Sprintf("MISSED by %.3g%s (%.0f%% short)", goal-got, unit, 100*(goal-got)/goal)
}

func verdictAtMost(got, goal float64, unit string) string {
	if got <= goal {
		return "met"
	}
	return fmt.Sprintf("MISSED by %.3g%s (%.0f%% over)", got-goal, unit, 100*(got-goal)/goal)
}

func (r *report) print(w io.Writer) {
	m := r.machine
	fmt.Fprintf(w, "\nkvaudit benchmarks — %s (took %s)\n", r.started.UTC().Format("2006-01-02 15:04 MST"), r.elapsed.Round(time.Second))
	fmt.Fprintf(w, "machine: %s, %d cores (GOMAXPROCS %d), %s RAM; %s %s/%s; Azurite %s on node %s; load average at start %s\n\n",
		m.cpu, m.cores, runtime.GOMAXPROCS(0), m.mem, m.goVersion, runtime.GOOS, runtime.GOARCH, m.azurite, m.node, m.load)
	widths := [5]int{len("target"), len("measurement"), len("result"), len("goal"), len("verdict")}
	for _, x := range r.rows {
		for i, s := range [5]string{x.target, x.what, x.result, x.goal, x.verdict} {
			widths[i] = max(widths[i], len([]rune(s)))
		}
	}
	line := func(cells [5]string) {
		fmt.Fprint(w, "|")
		for i, c := range cells {
			fmt.Fprintf(w, " %s%s |", c, strings.Repeat(" ", widths[i]-len([]rune(c))))
		}
		fmt.Fprintln(w)
	}
	line([5]string{"target", "measurement", "result", "goal", "verdict"})
	var sep [5]string
	for i := range sep {
		sep[i] = strings.Repeat("-", widths[i])
	}
	line(sep)
	for _, x := range r.rows {
		line([5]string{x.target, x.what, x.result, x.goal, x.verdict})
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// machine describes where the figures were taken.
type machine struct {
	cpu, mem, goVersion, azurite, node, load string
	cores                                    int
}

func readMachine(root string) machine {
	m := machine{cores: runtime.NumCPU(), goVersion: runtime.Version(), cpu: "unknown CPU", mem: "?", azurite: "?", node: "?", load: "?"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.load = strings.Join(f[:3], " ")
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "node_modules", "azurite", "package.json")); err == nil {
		var p struct{ Version string }
		if json.Unmarshal(b, &p) == nil && p.Version != "" {
			m.azurite = p.Version
		}
	}
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		m.node = strings.TrimSpace(string(out))
	}
	return m
}

// median of xs (which it sorts); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// percentile of sorted-in-place xs, nearest rank.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	k := int(p/100*float64(len(xs))+0.999999) - 1
	return xs[min(max(k, 0), len(xs)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
