package parse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Format is the layout of an audit blob.
type Format int

const (
	FormatUnknown   Format = iota // not yet detected
	FormatJSONLines               // one JSON object per line (Azure Monitor since Nov 2018)
	FormatDocument                // legacy: one {"records":[ … ]} document, possibly pretty-printed
)

// String returns "unknown", "jsonl" or "document".
func (f Format) String() string {
	switch f {
	case FormatJSONLines:
		return "jsonl"
	case FormatDocument:
		return "document"
	case FormatUnknown:
		return "unknown"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// DefaultMaxRecordBytes is the longest record accepted when
// Options.MaxRecordBytes is not set.
const DefaultMaxRecordBytes = 4 << 20

// Options tell a Reader where its input lies in the blob and how to read it.
// The zero value reads a growing blob from its start.
type Options struct {
	// Blob is the blob's identity (BlobID; a bare path for a blob of the
	// first logs account or a file): copied into Record.Blob, used for the
	// vault fallback (see ParseBlobPath) and in errors.
	Blob string
	// Account is the logs account Record.Account names when Blob does not
	// name one: the first logs account's name ("" for a file).
	Account string
	// BaseOffset is the blob offset of the reader's first byte: the
	// Consumed value of an earlier Reader on the same blob.
	BaseOffset int64
	// Format is the format known from an earlier read. FormatUnknown
	// detects it from the first bytes, which must then be the blob's
	// (BaseOffset 0).
	Format Format
	// Complete says the input is whole (a file on disk): an unterminated
	// last line is a record too, and a truncated document is an error.
	// Ingest of a growing blob leaves it false.
	Complete bool
	// MaxRecordBytes is the longest record accepted (line length without
	// its line end; document element length); DefaultMaxRecordBytes if ≤ 0.
	// A longer record is skipped, with a RecordError, without being held
	// in memory whole.
	MaxRecordBytes int
}

// RecordError reports a record that was skipped: not JSON, not an object,
// no usable time, too long, or a document that cannot be read on.
type RecordError struct {
	Blob   string
	Offset int64 // blob offset of the record's (line's, element's) first byte
	Reason string
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("parse: bad record in blob %q at byte %d: %s", e.Blob, e.Offset, e.Reason)
}

// ErrFormatRequired is returned by Next when Options.BaseOffset > 0 but
// Options.Format is FormatUnknown: the format can only be told from a
// blob's first bytes.
var ErrFormatRequired = errors.New("parse: Options.Format must be known when Options.BaseOffset > 0")

var errOptions = errors.New("parse: invalid Options (negative BaseOffset or unknown Format)")

// Reader reads the records of one audit blob, or of the part of it after a
// checkpoint. It buffers at most MaxRecordBytes plus a fixed amount. A
// Reader is not safe for concurrent use.
type Reader struct {
	r    io.Reader
	opt  Options
	max  int
	fmt  Format
	norm normalizer

	buf      []byte // input window: buf[pos:end] is not processed yet
	pos, end int
	base     int64 // blob offset of buf[0]
	limit    int   // largest len(buf)
	grow     bool  // the last read filled the buffer
	eof      bool  // r returned io.EOF
	rerr     error // sticky error: from r, or for bad Options
	consumed int64
	bomDone  bool

	// JSON Lines
	scanFrom  int   // buf index from which no '\n' has been seen yet
	skipping  bool  // discarding an over-long line
	skipStart int64 // its offset

	// document
	ds         docState
	recordsKey bool // the top-level key just read is "records"

	raw []byte // the last record's JSON object (Raw)
}

// docState is where a Reader is in a document.
type docState int

const (
	dsTop          docState = iota // before the top-level '{'
	dsFirstKey                     // after '{': a key or '}'
	dsKey                          // after ',': a key
	dsColon                        // after a key
	dsValue                        // after ':'
	dsAfterTop                     // after a top-level value: ',' or '}'
	dsArrFirst                     // after "records": [ : an element or ']'
	dsArrAfterElem                 // after an element: ',' or ']'
	dsArrElem                      // after ',': an element
	dsArrResume                    // resumed after an element or its ',': ',', an element or ']'
	dsEnd                          // after the top-level '}': only whitespace
	dsDone                         // gave up or finished: nothing more is read
)

const (
	// The buffer starts small, so that short inputs cost little, and
	// doubles while reads fill it, up to fullBuffer: large reads for long
	// inputs. It grows beyond only to hold a record longer than that.
	initialBuffer = 8 << 10
	fullBuffer    = 256 << 10
	readRoom      = 64 << 10 // read space kept beyond MaxRecordBytes
)

// NewReader returns a Reader of r, which yields the blob's bytes from
// opt.BaseOffset on. Invalid options are reported by the first Next.
func NewReader(r io.Reader, opt Options) *Reader {
	p := &Reader{r: r, opt: opt, fmt: opt.Format, consumed: opt.BaseOffset, base: opt.BaseOffset}
	p.max = opt.MaxRecordBytes
	if p.max <= 0 {
		p.max = DefaultMaxRecordBytes
	}
	p.limit = p.max + 2 + readRoom // a line of max bytes, "\r\n", room to read
	p.buf = make([]byte, min(initialBuffer, p.limit))
	p.norm.setBlob(opt.Blob, opt.Account)
	switch {
	case opt.BaseOffset < 0 || opt.Format < FormatUnknown || opt.Format > FormatDocument:
		p.rerr = errOptions
	case opt.BaseOffset > 0 && opt.Format == FormatUnknown:
		p.rerr = ErrFormatRequired
	case opt.BaseOffset > 0:
		p.bomDone = true
		p.ds = dsArrResume
	}
	return p
}

// Raw is the JSON object of the record the last successful Next filled,
// as logged, from its '{' to its '}' (a legacy document's element may
// hold line breaks). It is valid until the next call of Next. A
// Decoder's Decode of it, with the record's Blob and Offset, gives the
// same Record.
func (p *Reader) Raw() []byte { return p.raw }

// Format returns the blob's format: Options.Format, or what was detected;
// FormatUnknown until the first bytes other than whitespace have been seen.
func (p *Reader) Format() Format { return p.fmt }

// Consumed is the blob offset up to which input is finished: just past the
// last complete record returned or skipped, with its line end or the
// separators after it, blank lines and a byte order mark. A new Reader with
// Options{BaseOffset: Consumed(), Format: Format()} on the same blob yields
// exactly the records this one has not returned: none cut, lost or read
// twice. Before any record, Consumed is Options.BaseOffset.
func (p *Reader) Consumed() int64 { return p.consumed }

// Next parses the next complete record into *rec, overwriting it entirely,
// and returns nil. It returns a *RecordError for a bad record that was
// skipped (Consumed has moved past it, *rec is unchanged; call Next again),
// io.EOF when no complete record remains (for a growing blob: none yet),
// and any other error from the underlying reader, from then on.
// ErrFormatRequired reports unusable Options.
//
// The strings in *rec are safe to keep. rec.Properties, rec.Extra and
// rec.Identity.Claims share the Reader's buffers: they are valid only until
// the next call of Next; copy them to keep them.
func (p *Reader) Next(rec *Record) error {
	if p.rerr != nil {
		return p.rerr
	}
	if !p.bom() {
		return p.stop()
	}
	if p.fmt == FormatUnknown {
		if err := p.detect(); err != nil {
			return err
		}
	}
	if p.fmt == FormatDocument {
		return p.nextDoc(rec)
	}
	return p.nextLine(rec)
}

// stop is what Next returns when the input ends: the read error, or io.EOF.
func (p *Reader) stop() error {
	if p.rerr != nil {
		return p.rerr
	}
	return io.EOF
}

func (p *Reader) recordError(off int64, reason string) error {
	return &RecordError{Blob: p.opt.Blob, Offset: off, Reason: reason}
}

// fill reads more input into buf, keeping buf[pos:end] (moved to the
// front). It reports whether bytes were added; false means the input
// ended (p.eof) or failed (p.rerr).
func (p *Reader) fill() bool {
	if p.eof || p.rerr != nil {
		return false
	}
	if p.pos > 0 {
		n := copy(p.buf, p.buf[p.pos:p.end])
		p.base += int64(p.pos)
		p.scanFrom -= p.pos
		p.pos, p.end = 0, n
	}
	switch {
	case p.end == len(p.buf) && len(p.buf) >= p.limit:
		// Callers skip or give up before a record outgrows the limit.
		p.rerr = errors.New("parse: internal error: buffer limit reached")
		return false
	case p.end == len(p.buf), p.grow && len(p.buf) < fullBuffer:
		nb := make([]byte, min(2*len(p.buf), p.limit))
		copy(nb, p.buf[:p.end])
		p.buf = nb
	}
	p.grow = false
	for range 100 {
		n, err := p.r.Read(p.buf[p.end:])
		if n < 0 || n > len(p.buf)-p.end {
			p.rerr = errors.New("parse: reader returned an invalid count")
			return false
		}
		// A read that fills the buffer hints at a long input: grow next time.
		p.grow = n > 0 && p.end+n == len(p.buf)
		p.end += n
		if err == io.EOF {
			p.eof = true
			return n > 0
		}
		if err != nil {
			p.rerr = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
	p.rerr = io.ErrNoProgress
	return false
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// bom skips a UTF-8 byte order mark at blob offset 0. It returns false
// while the input is too short to tell (a growing blob of 1 or 2 bytes).
func (p *Reader) bom() bool {
	if p.bomDone {
		return true
	}
	for p.end-p.pos < len(utf8BOM) && p.fill() {
	}
	avail := p.buf[p.pos:p.end]
	switch {
	case bytes.HasPrefix(avail, utf8BOM):
		p.pos += len(utf8BOM)
		p.scanFrom = p.pos
	case len(avail) < len(utf8BOM) && bytes.HasPrefix(utf8BOM, avail) && !(p.opt.Complete && p.eof):
		return false
	}
	p.bomDone = true
	return true
}

// detect tells the format from the first bytes after whitespace. It
// returns io.EOF while they do not tell yet (Consumed stays 0).
func (p *Reader) detect() error {
	for {
		if f, ok := sniff(p.buf[p.pos:p.end]); ok {
			p.fmt = f
			return nil
		}
		if p.end-p.pos > p.max {
			// Whitespace beyond any record's size: let line reading deal with it.
			p.fmt = FormatJSONLines
			return nil
		}
		if !p.fill() {
			if p.rerr != nil {
				return p.rerr
			}
			if p.opt.Complete && len(bytes.TrimLeft(p.buf[p.pos:p.end], " \t\r\n")) > 0 {
				p.fmt = FormatJSONLines // a fragment: line reading reports it
				return nil
			}
			return io.EOF
		}
	}
}

// sniff decides the format from b, the input after a byte order mark:
// FormatDocument if the first object's first key is "records" with an
// array value, or if the first line is a lone '{'; FormatJSONLines
// otherwise. ok is false when b ends before that is clear.
func sniff(b []byte) (f Format, ok bool) {
	i := skipSpace(b, 0, true)
	if i == len(b) {
		return FormatUnknown, false
	}
	if b[i] != '{' {
		return FormatJSONLines, true
	}
	if i = skipSpace(b, i+1, false); i == len(b) {
		return FormatUnknown, false
	}
	if b[i] == '\n' {
		return FormatDocument, true
	}
	const key = `"records"`
	for k := 0; k < len(key); k++ {
		if i+k == len(b) {
			return FormatUnknown, false
		}
		if b[i+k] != key[k] {
			return FormatJSONLines, true
		}
	}
	if i = skipSpace(b, i+len(key), true); i == len(b) {
		return FormatUnknown, false
	}
	if b[i] != ':' {
		return FormatJSONLines, true
	}
	if i = skipSpace(b, i+1, true); i == len(b) {
		return FormatUnknown, false
	}
	if b[i] == '[' {
		return FormatDocument, true
	}
	return FormatJSONLines, true
}

// skipSpace skips JSON whitespace from i; newlines only if nl.
func skipSpace(b []byte, i int, nl bool) int {
	for ; i < len(b); i++ {
		switch b[i] {
		case ' ', '\t', '\r':
			continue
		case '\n':
			if nl {
				continue
			}
		}
		break
	}
	return i
}

// --- JSON Lines ---

func (p *Reader) nextLine(rec *Record) error {
	for {
		if p.skipping {
			if i := bytes.IndexByte(p.buf[p.pos:p.end], '\n'); i >= 0 {
				p.pos += i + 1
				p.scanFrom = p.pos
				p.skipping = false
				p.consumed = p.base + int64(p.pos)
				return p.tooLong(p.skipStart)
			}
			p.pos, p.scanFrom = p.end, p.end // drop what was read of it
			if !p.fill() {
				if p.rerr == nil && p.opt.Complete {
					p.skipping = false
					p.consumed = p.base + int64(p.end)
					return p.tooLong(p.skipStart)
				}
				return p.stop()
			}
			continue
		}
		if i := bytes.IndexByte(p.buf[p.scanFrom:p.end], '\n'); i >= 0 {
			nl := p.scanFrom + i
			line, off := p.buf[p.pos:nl], p.base+int64(p.pos)
			p.pos = nl + 1
			p.scanFrom = p.pos
			p.consumed = p.base + int64(p.pos)
			if blank, err := p.line(rec, line, off); !blank {
				return err
			}
			continue
		}
		p.scanFrom = p.end
		// No line end yet. More than max+1 bytes (a line of max bytes
		// may still get "\r\n") is too long already: skip it unbuffered.
		if p.end-p.pos > p.max+1 {
			p.skipping = true
			p.skipStart = p.base + int64(p.pos)
			continue
		}
		if !p.fill() {
			if p.rerr == nil && p.opt.Complete && p.pos < p.end {
				line, off := p.buf[p.pos:p.end], p.base+int64(p.pos)
				p.pos = p.end
				p.scanFrom = p.end
				p.consumed = p.base + int64(p.pos)
				if blank, err := p.line(rec, line, off); !blank {
					return err
				}
			}
			return p.stop()
		}
	}
}

func (p *Reader) tooLong(off int64) error {
	return p.recordError(off, "record longer than "+strconv.Itoa(p.max)+" bytes")
}

// line parses one line (without its '\n') starting at blob offset off.
// blank reports a line of whitespace only, which is no record.
func (p *Reader) line(rec *Record, line []byte, off int64) (blank bool, err error) {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > p.max {
		return false, p.tooLong(off)
	}
	if skipSpace(line, 0, true) == len(line) {
		return true, nil
	}
	sc := &p.norm.sc
	start, end := sc.record(line)
	if end < 0 {
		return false, p.recordError(off, syntaxReason(&sc.scanner))
	}
	if skipSpace(line, end, true) != len(line) {
		return false, p.recordError(off, "invalid JSON at record byte "+strconv.Itoa(end)+": data after the object")
	}
	if reason := p.norm.normalize(rec, line, off+int64(start)); reason != "" {
		return false, p.recordError(off, reason)
	}
	p.raw = line[start:end]
	return false, nil
}

func syntaxReason(s *scanner) string {
	switch {
	case s.errMsg == "not a JSON object":
		return s.errMsg
	case s.errEOF:
		return "invalid JSON at record byte " + strconv.Itoa(s.errPos) + ": unexpected end of record"
	}
	return "invalid JSON at record byte " + strconv.Itoa(s.errPos) + ": " + s.errMsg
}

// --- document ---

func (p *Reader) nextDoc(rec *Record) error {
	for {
		if p.ds == dsDone {
			return p.stop()
		}
		c, ok := p.peek()
		if !ok {
			return p.docEOF(p.base+int64(p.pos), false)
		}
		off := p.base + int64(p.pos)
		switch p.ds {
		case dsTop:
			if c != '{' {
				return p.giveUp(off, "document: expected '{'")
			}
			p.pos++
			p.ds = dsFirstKey

		case dsFirstKey, dsKey:
			if c == '}' && p.ds == dsFirstKey {
				p.pos++
				p.ds = dsEnd
				continue
			}
			if c != '"' {
				return p.giveUp(off, "document: expected a key")
			}
			end, discarded, err := p.frame()
			if err != nil {
				return err
			}
			if discarded {
				return p.giveUp(off, "document: key longer than "+strconv.Itoa(p.max)+" bytes")
			}
			s := scanner{b: p.buf[p.pos:end]}
			if s.str(1) != end-p.pos {
				return p.giveUp(off, "document: invalid key")
			}
			key := p.buf[p.pos+1 : end-1]
			if s.flags != 0 {
				key = appendUnquoted(nil, key, s.flags)
			}
			p.recordsKey = string(key) == "records"
			p.pos = end
			p.ds = dsColon

		case dsColon:
			if c != ':' {
				return p.giveUp(off, "document: expected ':'")
			}
			p.pos++
			p.ds = dsValue

		case dsValue:
			if p.recordsKey && c == '[' {
				p.pos++
				p.ds = dsArrFirst
				continue
			}
			if kindOf(c) == kNone {
				return p.giveUp(off, "document: expected a value")
			}
			// Other top-level members are skipped, unvalidated.
			end, discarded, err := p.frame()
			if err != nil {
				return err
			}
			if !discarded {
				p.pos = end
			}
			p.ds = dsAfterTop

		case dsAfterTop:
			switch c {
			case ',':
				p.pos++
				p.ds = dsKey
			case '}':
				p.pos++
				p.ds = dsEnd
			default:
				return p.giveUp(off, "document: expected ',' or '}'")
			}

		case dsArrFirst, dsArrAfterElem, dsArrElem, dsArrResume:
			switch {
			case c == ',' && (p.ds == dsArrAfterElem || p.ds == dsArrResume):
				p.pos++
				p.consumed = p.base + int64(p.pos)
				p.ds = dsArrElem
			case c == ']' && p.ds != dsArrElem:
				p.pos++
				p.ds = dsAfterTop
			case kindOf(c) != kNone && p.ds != dsArrAfterElem:
				return p.element(rec)
			default:
				return p.giveUp(off, "document: unexpected "+strconv.QuoteRune(rune(c))+" in records array")
			}

		case dsEnd:
			return p.giveUp(off, "document: data after the end")
		}
	}
}

// peek skips whitespace, reading as needed, and returns the next byte; ok
// is false when the input ended or failed first.
func (p *Reader) peek() (c byte, ok bool) {
	for {
		for ; p.pos < p.end; p.pos++ {
			switch c := p.buf[p.pos]; c {
			case ' ', '\t', '\r', '\n':
			default:
				return c, true
			}
		}
		if !p.fill() {
			return 0, false
		}
	}
}

// docEOF handles the end of input in a document, which is incomplete
// unless it came after the closing '}', or before anything but whitespace
// (at the start, or after the resume point). off is where more input was
// expected; inValue tells that a value had begun.
func (p *Reader) docEOF(off int64, inValue bool) error {
	if p.rerr != nil {
		return p.rerr
	}
	switch {
	case p.ds == dsEnd:
		p.consumed = p.base + int64(p.end)
		p.ds = dsDone
		return io.EOF
	case !inValue && p.ds == dsTop:
		return io.EOF
	case !inValue && p.ds == dsArrResume:
		// Only whitespace since the resume point, which may have been the
		// end of the document: consume it, the state stays the same.
		p.consumed = p.base + int64(p.end)
		return io.EOF
	case p.opt.Complete:
		return p.giveUp(off, "document: truncated")
	}
	// A growing blob: the rest is still to come.
	return io.EOF
}

// giveUp reports a document that cannot be read on: it drains the input,
// moves Consumed to its end so a broken blob is not read again and again,
// and returns one RecordError; Next returns io.EOF from then on.
func (p *Reader) giveUp(off int64, reason string) error {
	for {
		p.pos, p.scanFrom = p.end, p.end
		if !p.fill() {
			break
		}
	}
	p.ds = dsDone
	if p.rerr != nil {
		return p.rerr
	}
	p.consumed = p.base + int64(p.end)
	return p.recordError(off, reason)
}

// frame finds the end of the JSON value that starts at p.pos, reading as
// needed, without validating it. It returns the buf index just past the
// value; if the value is longer than max it has been discarded as read
// (discarded, p.pos at end). At the end of input it returns the error that
// Next should return (docEOF).
func (p *Reader) frame() (end int, discarded bool, err error) {
	var f framer
	start := p.base + int64(p.pos)
	p.scanFrom = p.pos
	for {
		if k := f.feed(p.buf[p.scanFrom:p.end]); k >= 0 {
			end = p.scanFrom + k
			if discarded || f.n > int64(p.max) {
				p.pos, p.scanFrom = end, end
				return end, true, nil
			}
			return end, false, nil
		}
		p.scanFrom = p.end
		if f.n > int64(p.max) {
			discarded = true
		}
		if discarded {
			p.pos = p.end
		}
		if !p.fill() {
			return 0, discarded, p.docEOF(start, true)
		}
	}
}

// element reads the array element at p.pos.
func (p *Reader) element(rec *Record) error {
	off := p.base + int64(p.pos)
	end, discarded, err := p.frame()
	if err != nil {
		return err
	}
	if discarded {
		p.afterElement()
		return p.tooLong(off)
	}
	elem := p.buf[p.pos:end]
	p.pos = end
	sc := &p.norm.sc
	_, n := sc.record(elem)
	if n < 0 {
		p.afterElement()
		return p.recordError(off, syntaxReason(&sc.scanner))
	}
	if n != len(elem) {
		p.afterElement()
		return p.recordError(off, "invalid JSON at record byte "+strconv.Itoa(n)+": data after the object")
	}
	reason := p.norm.normalize(rec, elem, off)
	p.afterElement()
	if reason != "" {
		return p.recordError(off, reason)
	}
	p.raw = elem
	return nil
}

// afterElement moves Consumed past the element just read, and past its
// ',' if that is already in the buffer (no read: Next must not wait for
// input it does not need).
func (p *Reader) afterElement() {
	p.consumed = p.base + int64(p.pos)
	p.ds = dsArrAfterElem
	i := skipSpace(p.buf[:p.end], p.pos, true)
	if i < p.end && p.buf[i] == ',' {
		p.pos = i + 1
		p.scanFrom = p.pos
		p.consumed = p.base + int64(p.pos)
		p.ds = dsArrElem
	}
}

// framer finds where a JSON value ends by counting brackets outside
// strings, across pieces of input. It does not validate: a broken record
// is framed somehow, then rejected by the scanner.
type framer struct {
	n      int64 // bytes examined
	depth  int
	inStr  bool
	esc    bool
	scalar bool
}

// feed examines the next piece b of the value and returns the index in b
// just past the value's end, or -1 when it goes on.
func (f *framer) feed(b []byte) int {
	i := 0
	if f.n == 0 && len(b) > 0 {
		switch b[0] {
		case '"':
			f.inStr = true
		case '{', '[':
			f.depth = 1
		default:
			f.scalar = true
		}
		i = 1
	}
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case f.inStr:
			switch {
			case f.esc:
				f.esc = false
			case c == '\\':
				f.esc = true
			case c == '"':
				f.inStr = false
				if f.depth == 0 {
					f.n += int64(i + 1)
					return i + 1
				}
			}
		case f.scalar:
			switch c {
			case ',', ']', '}', ':', ' ', '\t', '\r', '\n', '{', '[', '"':
				f.n += int64(i)
				return i
			}
		default:
			switch c {
			case '"':
				f.inStr = true
			case '{', '[':
				f.depth++
			case '}', ']':
				if f.depth--; f.depth == 0 {
					f.n += int64(i + 1)
					return i + 1
				}
			}
		}
	}
	f.n += int64(len(b))
	return -1
}
