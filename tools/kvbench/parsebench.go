package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Target 1: `handler parse` on ~100 MB of JSON Lines, as a whole process
// writing NDJSON to /dev/null, against the baseline `kvbench naive`, a
// whole process decoding each line into map[string]any with encoding/json
// and encoding it again. The two alternate, run after run; the ratio is
// the median of the per-run ratios.

// runNaive is the baseline: the straightforward program.
func runNaive(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: kvbench naive FILE")
		return 2
	}
	f, err := os.Open(args[0])
	if err != nil {
		fmt.Fprintln(stderr, "kvbench naive:", err)
		return 1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	w := bufio.NewWriterSize(stdout, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			fmt.Fprintln(stderr, "kvbench naive: bad record:", err)
			continue
		}
		b, err := json.Marshal(m)
		if err != nil {
			fmt.Fprintln(stderr, "kvbench naive:", err)
			return 1
		}
		w.Write(b)
		w.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(stderr, "kvbench naive:", err)
		return 1
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(stderr, "kvbench naive:", err)
		return 1
	}
	return 0
}

// writeParseInput writes about size bytes of records of three vaults,
// interleaved, times increasing, to path.
func writeParseInput(ts []template, path string, size int64) (records int64, written int64, err error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	gens := []*vaultGen{newVaultGen(ts, "kv-payments-prod", 1), newVaultGen(ts, "kv-identity-prod", 1), newVaultGen(ts, "kv-batch-dev", 1)}
	t := time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)
	var line []byte
	for written < size {
		g := gens[records%int64(len(gens))]
		line = g.appendRecord(line[:0], t)
		n, _ := w.Write(line)
		written += int64(n)
		records++
		t = t.Add(time.Duration(37_123_400 + g.rng.IntN(1000)*100))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, 0, err
	}
	return records, written, f.Close()
}

// timeProcess runs name args with stdout to /dev/null and returns its wall
// time; stderr must stay empty (no record may be rejected).
func timeProcess(ctx context.Context, env []string, name string, args ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = null, &stderr
	cmd.Env = append(os.Environ(), env...)
	t0 := time.Now()
	err = cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, fmt.Errorf("%s %v: %v: %.300s", filepath.Base(name), args, err, stderr.String())
	}
	if stderr.Len() > 0 {
		return d, fmt.Errorf("%s %v reported: %.300s", filepath.Base(name), args, stderr.String())
	}
	return d, nil
}

func (b *bench) measureParse(ctx context.Context, rep *report) error {
	path := filepath.Join(b.tmp, "parse-input.jsonl")
	recs, size, err := writeParseInput(b.samples, path, int64(b.o.parseMB)*1e6)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	mb := float64(size) / 1e6
	b.logf("parse input: %d records, %.1f MB", recs, mb)

	for _, procs := range []string{"", "1"} {
		var env []string
		label := fmt.Sprintf("GOMAXPROCS=%d", b.machine.cores)
		if procs != "" {
			env = []string{"GOMAXPROCS=" + procs}
			label = "GOMAXPROCS=" + procs
		}
		var ours, naive, ratios []float64
		for i := range b.o.runs {
			// Alternate which goes first, so that neither always meets a
			// cold or a warm page cache, or the neighbours' bursts.
			order := []bool{true, false}
			if i%2 == 1 {
				order = []bool{false, true}
			}
			var dOurs, dNaive time.Duration
			for _, isOurs := range order {
				var d time.Duration
				var err error
				if isOurs {
					d, err = timeProcess(ctx, env, b.handler, "parse", path)
					dOurs = d
				} else {
					d, err = timeProcess(ctx, env, b.self, "naive", path)
					dNaive = d
				}
				if err != nil {
					return err
				}
			}
			ours = append(ours, mb/dOurs.Seconds())
			naive = append(naive, mb/dNaive.Seconds())
			ratios = append(ratios, dNaive.Seconds()/dOurs.Seconds())
			b.logf("parse %s run %d: handler %.0f MB/s, naive %.1f MB/s", label, i+1, mb/dOurs.Seconds(), mb/dNaive.Seconds())
		}
		r := median(ratios)
		what := fmt.Sprintf("handler parse vs naive, whole processes, %.0f MB → NDJSON, %s, median of %d", mb, label, b.o.runs)
		res := fmt.Sprintf("%.0f MB/s vs %.1f MB/s = %.1f×", median(ours), median(naive), r)
		if procs == "" {
			rep.add("1 parse", what, res, "≥ 8×", verdictAtLeast(r, 8, "×"))
		} else {
			v := "met"
			if r < 8 {
				v = fmt.Sprintf("below 8× by %.1f× (info)", 8-r)
			}
			rep.add("1 parse", what, res, "(info: one core)", v)
		}
	}
	rep.note("parse: %d generated records (%.0f MB, %d bytes/record) of 3 vaults from the 32 samples in internal/parse/testdata, times, callers, IPs, objects and ids varied (seeded).", recs, mb, size/recs)
	return nil
}
