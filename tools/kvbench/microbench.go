package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The parse package's Go benchmarks, in process and on one goroutine: the
// whole-process figures above include reading and writing and use every
// core; these isolate the parser. Medians of -count runs.
func (b *bench) measureMicro(ctx context.Context, rep *report) error {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	count := strconv.Itoa(max(b.o.runs, 3))
	mbs, err := b.goBench(ctx, goBin, nil, "^Benchmark(Reader|AppendJSON|Pipeline|Naive)$", count)
	if err != nil {
		return err
	}
	p, n := median(mbs["Pipeline"]), median(mbs["Naive"])
	if p == 0 || n == 0 {
		return fmt.Errorf("go test -bench ./internal/parse/: no figures")
	}
	rep.add("1 parse", fmt.Sprintf("in process, one goroutine (go test -bench, median of %d): read+normalize+NDJSON vs naive", len(mbs["Pipeline"])),
		fmt.Sprintf("%.0f MB/s vs %.1f MB/s = %.1f× (reader alone %.0f MB/s, NDJSON alone %.0f MB/s)", p, n, p/n, median(mbs["Reader"]), median(mbs["AppendJSON"])),
		"(info)", "")
	// encoding/json/v2, under its experiment: the standard library's newer
	// decoder, as a map and as a typed struct.
	v2, err := b.goBench(ctx, goBin, []string{"GOEXPERIMENT=jsonv2"}, "^Benchmark(NaiveV2|TypedV2)$", count)
	if err != nil {
		rep.add("1 parse", "encoding/json/v2 (GOEXPERIMENT=jsonv2)", "n/a: "+firstLine(err.Error()), "(info)", "")
		return nil
	}
	rep.add("1 parse", "in process, encoding/json/v2 (GOEXPERIMENT=jsonv2): line → map → JSON; line → typed struct → JSON",
		fmt.Sprintf("%.1f MB/s; %.1f MB/s (kvaudit's pipeline %.1f× the typed one)", median(v2["NaiveV2"]), median(v2["TypedV2"]), p/median(v2["TypedV2"])), "(info)", "")
	return nil
}

// goBench runs go test -bench on internal/parse and returns the MB/s of
// each benchmark, by name.
func (b *bench) goBench(ctx context.Context, goBin string, env []string, pattern, count string) (map[string][]float64, error) {
	cmd := exec.CommandContext(ctx, goBin, "test", "-run", "^$", "-bench", pattern, "-benchtime", "10x", "-count", count, "./internal/parse/")
	cmd.Dir = b.root
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go test -bench %s ./internal/parse/: %v\n%s", pattern, err, out.String())
	}
	mbs := map[string][]float64{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		for i := 1; i+1 < len(f); i++ {
			if f[i+1] == "MB/s" {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					mbs[name] = append(mbs[name], v)
				}
			}
		}
	}
	return mbs, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
