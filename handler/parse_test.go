package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const parseTestdata = "../internal/parse/testdata/"

func TestRunParse(t *testing.T) {
	samples := parseTestdata + "sekoia-intake-formats-keyvault.jsonl"
	bad := parseTestdata + "bad-lines.jsonl"
	legacy := parseTestdata + "legacy-document.json"
	missing := filepath.Join(t.TempDir(), "missing.json")
	tests := []struct {
		name       string
		args       []string
		stdin      string
		code       int
		lines      int      // records on stdout
		diag       []string // substrings expected on stderr, one per line
		diagPrefix string   // every stderr line starts so
	}{
		{"samples", []string{samples}, "", 0, 32, nil, ""},
		{"legacy document", []string{legacy}, "", 0, 3, nil, ""},
		{"bad records reported, run goes on", []string{bad, samples}, "", 0, 3 + 32, []string{
			bad + ":1402: invalid JSON", bad + ":2690: not a JSON object", bad + ":2698: time: missing",
			bad + ":2724: time: cannot parse", bad + ":2745: time: null", bad + ":2759: invalid JSON",
		}, bad + ":"},
		{"stdin", nil, `{"time":"2024-01-01T00:00:00Z"}` + "\n" + `{"time":"2024-01-01T00:00:01Z"}`, 0, 2, nil, ""},
		{"stdin dash", []string{"-"}, `{"time":"2024-01-01T00:00:00Z"}`, 0, 1, nil, ""},
		{"missing file", []string{missing, samples}, "", 1, 32, []string{"handler parse: open " + missing}, ""},
		{"help", []string{"-h"}, "", 2, 0, []string{"usage: handler parse"}, ""},
		{"unknown flag", []string{"-x"}, "", 2, 0, []string{"flag provided but not defined: -x"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runParse(tc.args, strings.NewReader(tc.stdin), &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			lines := 0
			for _, l := range bytes.Split(stdout.Bytes(), []byte("\n")) {
				if len(l) == 0 {
					continue
				}
				lines++
				if !json.Valid(l) {
					t.Errorf("output line is not JSON: %s", l)
				}
			}
			if lines != tc.lines || (lines > 0 && !bytes.HasSuffix(stdout.Bytes(), []byte("\n"))) {
				t.Errorf("%d output lines, want %d", lines, tc.lines)
			}
			for _, want := range tc.diag {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if tc.diagPrefix != "" {
				diag := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
				if len(diag) != len(tc.diag) {
					t.Errorf("%d stderr lines, want %d:\n%s", len(diag), len(tc.diag), stderr.String())
				}
				for _, l := range diag {
					if !strings.HasPrefix(l, tc.diagPrefix) {
						t.Errorf("stderr line %q", l)
					}
				}
			}
		})
	}
}

// TestRunParseParallel checks that a file cut into sections parsed at
// once gives exactly the output of one pass.
func TestRunParseParallel(t *testing.T) {
	samples, err := os.ReadFile(parseTestdata + "sekoia-intake-formats-keyvault.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(samples, []byte("\n"))
	var big bytes.Buffer
	big.WriteString("\uFEFF")
	for i := 0; big.Len() < 3<<20; i++ {
		switch i % 97 {
		case 13:
			big.WriteString("not json\n")
		case 41:
			big.WriteString("\r\n\n")
		}
		big.Write(lines[i%len(lines)])
	}
	big.Write(bytes.TrimSuffix(lines[0], []byte("\n"))) // unterminated tail
	name := filepath.Join(t.TempDir(), "big.jsonl")
	if err := os.WriteFile(name, big.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	run := func(min int64) (string, string) {
		t.Helper()
		defer func(old int64) { parallelMin = old }(parallelMin)
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0)))) // parallel even on one CPU
		parallelMin = min
		var stdout, stderr bytes.Buffer
		if code := runParse([]string{name}, nil, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	seqOut, seqDiag := run(1 << 62)
	parOut, parDiag := run(0)
	if seqOut != parOut || seqDiag != parDiag {
		t.Errorf("parallel output differs: %d vs %d bytes, diag %d vs %d bytes", len(parOut), len(seqOut), len(parDiag), len(seqDiag))
	}
	if n := strings.Count(seqDiag, "\n"); n == 0 || strings.Count(seqOut, "\n") < 2000 {
		t.Errorf("test input too tame: %d bad records", n)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestRunParseWriteError(t *testing.T) {
	var stderr bytes.Buffer
	code := runParse([]string{parseTestdata + "sekoia-intake-formats-keyvault.jsonl"}, nil, failingWriter{}, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "handler parse: write output:") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
