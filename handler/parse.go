package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"

	"github.com/kvaudit/kvaudit/internal/parse"
)

const parseUsage = `usage: handler parse [FILE…|-]

Reads Key Vault audit logs (JSON Lines, or a legacy {"records":[…]} document)
from each FILE, or from standard input when there is none or FILE is "-",
and prints each record as one line of normalized JSON on standard output.
Bad records are reported on standard error as FILE:OFFSET: REASON and
skipped. Exit status: 0 when every input was read (even with bad records),
1 when an input could not be opened or read, 2 for usage errors.
`

// runParse implements `handler parse [FILE…|-]`. Every input is read to
// its end whatever happens to the others; the exit status is the worst.
func runParse(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), parseUsage) }
	if err := fs.Parse(args); err != nil {
		return 2 // the flag package has printed the usage
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}

	out := bufio.NewWriterSize(stdout, 1<<20)
	diag := bufio.NewWriterSize(stderr, 64<<10)
	defer diag.Flush()
	status := 0
	for _, name := range files {
		err := parseInput(name, stdin, out, diag)
		var werr outputError
		if errors.As(err, &werr) {
			fmt.Fprintf(diag, "handler parse: write output: %v\n", werr.err)
			return 1 // no point reading on
		}
		if err != nil {
			fmt.Fprintf(diag, "handler parse: %v\n", err)
			status = 1
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(diag, "handler parse: write output: %v\n", err)
		return 1
	}
	return status
}

// outputError marks a failure to write the output, which ends the run.
type outputError struct{ err error }

func (e outputError) Error() string { return e.err.Error() }

// parallelMin is the smallest file cut into sections parsed in parallel; a
// variable so that tests can lower it.
var parallelMin int64 = 8 << 20

// parseInput parses one input into out, reporting bad records on diag.
func parseInput(name string, stdin io.Reader, out *bufio.Writer, diag io.Writer) error {
	if name == "-" {
		return parseStream(stdin, name, 0, parse.FormatUnknown, out, diag)
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() >= parallelMin && runtime.GOMAXPROCS(0) > 1 {
		return parseFileParallel(f, st.Size(), name, out, diag)
	}
	return parseStream(f, name, 0, parse.FormatUnknown, out, diag)
}

// parseStream parses r, the bytes of input name from offset base on.
func parseStream(r io.Reader, name string, base int64, format parse.Format, out *bufio.Writer, diag io.Writer) error {
	p := parse.NewReader(r, parse.Options{Blob: name, BaseOffset: base, Format: format, Complete: true})
	var rec parse.Record
	for {
		err := p.Next(&rec)
		var re *parse.RecordError
		switch {
		case err == nil:
			// Append straight into the writer's free space: no copy.
			b := append(parse.AppendJSON(out.AvailableBuffer(), &rec), '\n')
			if _, err := out.Write(b); err != nil {
				return outputError{err}
			}
		case errors.As(err, &re):
			fmt.Fprintf(diag, "%s:%d: %s\n", name, re.Offset, re.Reason)
		case err == io.EOF:
			return nil
		default:
			return fmt.Errorf("read %s: %w", name, err)
		}
	}
}

// A large JSON Lines file is cut at line ends into sections that workers
// parse at once, each a parse.Reader resumed at its section's offset (the
// resume contract makes that the same as one pass), and the output is
// written in order. Parsing is CPU-bound: this uses every core.
const sectionSize = 2 << 20

type section struct {
	start, end int64
	out        *[]byte // from outBufs
	diag       []byte
	err        error
	done       chan struct{}
}

// outBufs holds output buffers big enough for a section's records (their
// JSON is about 1.5 times the input): growing them by append would cost
// more than the parsing.
var outBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 2*sectionSize)
	return &b
}}

func parseFileParallel(f *os.File, size int64, name string, out *bufio.Writer, diag io.Writer) error {
	// Only JSON Lines can be cut at line ends; a document is read in one pass.
	head := parse.NewReader(io.NewSectionReader(f, 0, min(size, 1<<20)), parse.Options{Blob: name})
	var rec parse.Record
	for head.Format() == parse.FormatUnknown {
		var re *parse.RecordError
		if err := head.Next(&rec); err != nil && !errors.As(err, &re) {
			break // io.EOF before anything but whitespace, or a read error
		}
	}
	if head.Format() != parse.FormatJSONLines {
		return parseStream(io.NewSectionReader(f, 0, size), name, 0, parse.FormatUnknown, out, diag)
	}

	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan *section)
	order := make(chan *section, 2*workers) // bounds the sections in memory
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for s := range jobs {
				s.run(f, name)
			}
		})
	}
	go func() { // cut the file into sections, in order
		defer close(order)
		defer close(jobs)
		for start := int64(0); start < size; {
			end, err := lineEndAfter(f, min(start+sectionSize, size), size)
			s := &section{start: start, end: end, err: err, done: make(chan struct{})}
			select {
			case order <- s:
			case <-stop:
				return
			}
			if err != nil {
				close(s.done)
				return
			}
			select {
			case jobs <- s:
			case <-stop:
				close(s.done)
				return
			}
			start = end
		}
	}()

	var err error
	for s := range order {
		<-s.done
		if err != nil {
			continue // drain
		}
		if s.out != nil {
			if _, werr := out.Write(*s.out); werr != nil {
				err = outputError{werr}
			}
			*s.out = (*s.out)[:0]
			outBufs.Put(s.out)
		}
		diag.Write(s.diag) //nolint:errcheck // diagnostics are best effort
		if err == nil && s.err != nil {
			err = s.err
		}
		if err != nil {
			close(stop)
		}
	}
	wg.Wait()
	return err
}

// run parses the section into s.out and s.diag.
func (s *section) run(f *os.File, name string) {
	defer close(s.done)
	s.out = outBufs.Get().(*[]byte)
	r := io.NewSectionReader(f, s.start, s.end-s.start)
	p := parse.NewReader(r, parse.Options{Blob: name, BaseOffset: s.start, Format: parse.FormatJSONLines, Complete: true})
	var rec parse.Record
	for {
		err := p.Next(&rec)
		var re *parse.RecordError
		switch {
		case err == nil:
			*s.out = append(parse.AppendJSON(*s.out, &rec), '\n')
		case errors.As(err, &re):
			s.diag = fmt.Appendf(s.diag, "%s:%d: %s\n", name, re.Offset, re.Reason)
		case err == io.EOF:
			return
		default:
			s.err = fmt.Errorf("read %s: %w", name, err)
			return
		}
	}
}

// lineEndAfter returns the offset just past the first '\n' at or after
// from-1 (so from itself when a line ends right before it), or size.
func lineEndAfter(f *os.File, from, size int64) (int64, error) {
	if from >= size {
		return size, nil
	}
	buf := make([]byte, 4<<10)
	for off := from - 1; off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		for i, c := range buf[:n] {
			if c == '\n' {
				return off + int64(i) + 1, nil
			}
		}
		off += int64(n)
		if err != nil && err != io.EOF {
			return 0, fmt.Errorf("read %s at %s: %w", f.Name(), strconv.FormatInt(off, 10), err)
		}
		if n == 0 {
			break
		}
	}
	return size, nil
}
