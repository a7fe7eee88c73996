package funchost

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// maxDepth is encoding/json's nesting limit. Using the same limit means the
// scanner accepts exactly what json.Valid accepts, and a hostile body cannot
// grow the container stack without bound.
const maxDepth = 10000

// readBufferSize is large enough that a base64 string is scanned in long
// runs between reads, and small enough to be irrelevant to memory use.
const readBufferSize = 64 << 10

// stringStop marks the bytes that end a run of ordinary string content: the
// closing quote, the start of an escape, and the control characters JSON
// forbids inside strings.
var stringStop = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'] = true
	t['\\'] = true
	return t
}()

// scanner is a byte-level JSON scanner over a bufio.Reader. It validates and
// skips any value in constant memory, and can copy ("capture") what it
// consumes into a buffer charged against a byte budget.
//
// Errors: syntax errors and premature end of input wrap ErrMalformed; a
// capture beyond the budget wraps ErrTooLarge; a failing reader's error is
// returned wrapped as it is.
type scanner struct {
	br  *bufio.Reader
	off int64 // bytes consumed so far, for sizes and error messages

	capturing bool
	capt      []byte
	budget    int64 // bytes still allowed into captures

	depth int    // containers open around the current position
	stack []byte // '{' or '[' for each container open inside skipValue

	keep []string // Data members captured rather than skipped
}

func newScanner(r io.Reader, budget int64) *scanner {
	return &scanner{br: bufio.NewReaderSize(r, readBufferSize), budget: budget}
}

// window returns the buffered bytes, reading when none are buffered. It
// returns io.EOF (unwrapped) at a clean end of input.
func (s *scanner) window() ([]byte, error) {
	if s.br.Buffered() == 0 {
		if _, err := s.br.Peek(1); err != nil {
			return nil, err
		}
	}
	b, _ := s.br.Peek(s.br.Buffered())
	return b, nil
}

// consume moves past b, which must be a prefix of the current window, and
// copies it into the capture when one is active.
func (s *scanner) consume(b []byte) error {
	if s.capturing {
		if int64(len(b)) > s.budget {
			return fmt.Errorf("%w: more than the metadata limit held at offset %d", ErrTooLarge, s.off)
		}
		s.budget -= int64(len(b))
		s.capt = append(s.capt, b...)
	}
	n, err := s.br.Discard(len(b))
	s.off += int64(n)
	return err
}

// consume1 moves past one byte the caller has already peeked.
func (s *scanner) consume1() error {
	b, _ := s.br.Peek(1)
	return s.consume(b)
}

// need peeks n bytes (n ≤ the buffer size), failing if input ends first.
func (s *scanner) need(n int) ([]byte, error) {
	b, err := s.br.Peek(n)
	if err != nil {
		return nil, s.unexpected(err)
	}
	return b, nil
}

// unexpected turns the end of input into a syntax error; other read errors
// pass through, wrapped with the offset.
func (s *scanner) unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: unexpected end of input at offset %d: %w", ErrMalformed, s.off, io.ErrUnexpectedEOF)
	}
	if errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge) {
		return err
	}
	return fmt.Errorf("funchost: reading invocation at offset %d: %w", s.off, err)
}

func (s *scanner) syntax(format string, args ...any) error {
	return fmt.Errorf("%w: %s at offset %d", ErrMalformed, fmt.Sprintf(format, args...), s.off)
}

// skipWS moves past whitespace and returns the next byte without consuming
// it. At a clean end of input it returns io.EOF unwrapped, so that the caller
// decides whether the end is legitimate.
func (s *scanner) skipWS() (byte, error) {
	for {
		w, err := s.window()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, s.unexpected(err)
		}
		for i, c := range w {
			if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
				if err := s.consume(w[:i]); err != nil {
					return 0, err
				}
				return c, nil
			}
		}
		if err := s.consume(w); err != nil {
			return 0, err
		}
	}
}

// next is skipWS for positions where the end of input is an error.
func (s *scanner) next() (byte, error) {
	c, err := s.skipWS()
	if err != nil {
		return 0, s.unexpected(err)
	}
	return c, nil
}

// expect consumes the byte want after optional whitespace.
func (s *scanner) expect(want byte, what string) error {
	c, err := s.next()
	if err != nil {
		return err
	}
	if c != want {
		return s.syntax("expected %s, found %q", what, c)
	}
	return s.consume1()
}

// skipString moves past a string; the current byte must be its opening quote.
// Content is consumed a window at a time, escapes included, so that both a
// 256 MiB base64 Data value and text encoded twice (where every quote of the
// blob becomes \\\" on the wire) cost a tight loop, not a call per byte.
func (s *scanner) skipString() error {
	if err := s.consume1(); err != nil {
		return err
	}
	for {
		w, err := s.window()
		if err != nil {
			return s.unexpected(err)
		}
		i := 0
	scan:
		for {
			if i = indexStop(w, i); i == len(w) {
				break
			}
			switch c := w[i]; c {
			case '"':
				return s.consume(w[:i+1])
			case '\\':
				if i+1 == len(w) {
					break scan // the escape straddles reads
				}
				switch w[i+1] {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
					i += 2
					continue
				case 'u':
					if i+6 > len(w) {
						break scan
					}
					if !isHex(w[i+2]) || !isHex(w[i+3]) || !isHex(w[i+4]) || !isHex(w[i+5]) {
						break scan // skipEscape reports it
					}
					i += 6
					continue
				}
				break scan
			default:
				if err := s.consume(w[:i]); err != nil {
					return err
				}
				return s.syntax("control character %#02x in string", c)
			}
		}
		if err := s.consume(w[:i]); err != nil {
			return err
		}
		if i < len(w) {
			if err := s.skipEscape(); err != nil {
				return err
			}
		}
	}
}

// skipEscape moves past one escape sequence, or reports it invalid; the
// current byte is its backslash. Peeking the whole sequence handles escapes
// that straddle reads.
func (s *scanner) skipEscape() error {
	b, err := s.need(2)
	if err != nil {
		return err
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return s.consume(b)
	case 'u':
		if b, err = s.need(6); err != nil {
			return err
		}
		for _, h := range b[2:] {
			if !isHex(h) {
				return s.syntax("invalid \\u escape %q", b)
			}
		}
		return s.consume(b)
	default:
		return s.syntax("invalid escape %q", b)
	}
}

// indexStop returns the index of the first byte at or after i that stops a
// run of string content (see stringStop), or len(w). It tests eight bytes
// at a time: this is what skips a base64 value at memory speed.
func indexStop(w []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	// Twice-encoded text has an escape every few bytes: look at the next
	// few bytes singly before switching to words.
	for end := min(i+8, len(w)); i < end; i++ {
		if stringStop[w[i]] {
			return i
		}
	}
	for ; i+8 <= len(w); i += 8 {
		x := binary.LittleEndian.Uint64(w[i:])
		// Each term sets the high bit of the bytes that match (and perhaps
		// of bytes above a match, through the borrow): the lowest set bit
		// is always a true match.
		control := (x - 0x20*ones) &^ x & highs // byte < 0x20
		q := x ^ ('"' * ones)
		quote := (q - ones) &^ q & highs // byte == '"'
		b := x ^ ('\\' * ones)
		backslash := (b - ones) &^ b & highs // byte == '\\'
		if m := control | quote | backslash; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(w) && !stringStop[w[i]] {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// skipDigits consumes a run of decimal digits and returns how many there
// were. A run can span reads, so it is consumed window by window.
func (s *scanner) skipDigits() (int64, error) {
	var n int64
	for {
		w, err := s.window()
		if errors.Is(err, io.EOF) {
			return n, nil // the caller's next read reports the end
		}
		if err != nil {
			return n, s.unexpected(err)
		}
		i := 0
		for i < len(w) && '0' <= w[i] && w[i] <= '9' {
			i++
		}
		if err := s.consume(w[:i]); err != nil {
			return n, err
		}
		n += int64(i)
		if i < len(w) {
			return n, nil
		}
	}
}

// peekOpt returns the next byte without skipping whitespace; ok is false at
// the end of input, which ends a number legitimately.
func (s *scanner) peekOpt() (byte, bool, error) {
	w, err := s.window()
	if errors.Is(err, io.EOF) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, s.unexpected(err)
	}
	return w[0], true, nil
}

// skipNumber moves past a number as RFC 8259 defines it. It stops at the
// first byte that cannot continue the number; the caller judges that byte.
func (s *scanner) skipNumber() error {
	c, _, err := s.peekOpt()
	if err != nil {
		return err
	}
	if c == '-' {
		if err := s.consume1(); err != nil {
			return err
		}
	}
	c, ok, err := s.peekOpt()
	switch {
	case err != nil:
		return err
	case !ok:
		return s.unexpected(io.EOF)
	case c == '0':
		if err := s.consume1(); err != nil {
			return err
		}
	case '1' <= c && c <= '9':
		if _, err := s.skipDigits(); err != nil {
			return err
		}
	default:
		return s.syntax("invalid character %q in number", c)
	}
	if c, ok, err = s.peekOpt(); err != nil || !ok {
		return err
	}
	if c == '.' {
		if err := s.consume1(); err != nil {
			return err
		}
		if n, err := s.skipDigits(); err != nil {
			return err
		} else if n == 0 {
			return s.fractionOrExponentError()
		}
		if c, ok, err = s.peekOpt(); err != nil || !ok {
			return err
		}
	}
	if c == 'e' || c == 'E' {
		if err := s.consume1(); err != nil {
			return err
		}
		if c, ok, err = s.peekOpt(); err != nil {
			return err
		} else if ok && (c == '+' || c == '-') {
			if err := s.consume1(); err != nil {
				return err
			}
		}
		if n, err := s.skipDigits(); err != nil {
			return err
		} else if n == 0 {
			return s.fractionOrExponentError()
		}
	}
	return nil
}

func (s *scanner) fractionOrExponentError() error {
	_, ok, err := s.peekOpt()
	if err != nil {
		return err
	}
	if !ok {
		return s.unexpected(io.EOF)
	}
	return s.syntax("number without digits after '.' or exponent")
}

// skipLiteral moves past true, false or null.
func (s *scanner) skipLiteral(lit string) error {
	b, err := s.br.Peek(len(lit))
	if string(b) != lit {
		for i := range b {
			if b[i] != lit[i] {
				return s.syntax("invalid literal, expected %q", lit)
			}
		}
		return s.unexpected(err)
	}
	return s.consume(b)
}

// open enters a container, enforcing the nesting limit.
func (s *scanner) open() error {
	if s.depth >= maxDepth {
		return s.syntax("nesting deeper than %d", maxDepth)
	}
	s.depth++
	return s.consume1()
}

// skipScalar moves past a value that is not a container, starting at c.
func (s *scanner) skipScalar(c byte) error {
	switch {
	case c == '"':
		return s.skipString()
	case c == '-' || '0' <= c && c <= '9':
		return s.skipNumber()
	case c == 't':
		return s.skipLiteral("true")
	case c == 'f':
		return s.skipLiteral("false")
	case c == 'n':
		return s.skipLiteral("null")
	default:
		return s.syntax("invalid character %q looking for a value", c)
	}
}

// skipValue validates and moves past one value, after optional whitespace.
// It is iterative, not recursive: nesting costs one byte of stack per level.
func (s *scanner) skipValue() error {
	base := len(s.stack)
	for {
		// A value is expected here.
		c, err := s.next()
		if err != nil {
			return err
		}
		switch c {
		case '{', '[':
			if err := s.open(); err != nil {
				return err
			}
			close := byte('}')
			if c == '[' {
				close = ']'
			}
			d, err := s.next()
			if err != nil {
				return err
			}
			if d == close {
				s.depth--
				if err := s.consume1(); err != nil {
					return err
				}
				break // an empty container is a complete value
			}
			s.stack = append(s.stack, c)
			if c == '{' {
				if err := s.memberName(d); err != nil {
					return err
				}
			}
			continue
		default:
			if err := s.skipScalar(c); err != nil {
				return err
			}
		}

		// A value is complete: close containers until one continues.
		for {
			if len(s.stack) == base {
				return nil
			}
			top := s.stack[len(s.stack)-1]
			c, err := s.next()
			if err != nil {
				return err
			}
			if c == ',' {
				if err := s.consume1(); err != nil {
					return err
				}
				if top == '{' {
					d, err := s.next()
					if err != nil {
						return err
					}
					if err := s.memberName(d); err != nil {
						return err
					}
				}
				break
			}
			if top == '{' && c == '}' || top == '[' && c == ']' {
				s.stack = s.stack[:len(s.stack)-1]
				s.depth--
				if err := s.consume1(); err != nil {
					return err
				}
				continue
			}
			if top == '{' {
				return s.syntax("expected ',' or '}' after object member, found %q", c)
			}
			return s.syntax("expected ',' or ']' after array element, found %q", c)
		}
	}
}

// memberName moves past an object member's name and its colon; c is the
// already-peeked first byte.
func (s *scanner) memberName(c byte) error {
	if c != '"' {
		return s.syntax("expected string for object member name, found %q", c)
	}
	if err := s.skipString(); err != nil {
		return err
	}
	return s.expect(':', "':' after object member name")
}

// captureValue skips one value while copying its exact bytes. The returned
// slice is the caller's.
func (s *scanner) captureValue() ([]byte, error) {
	if _, err := s.next(); err != nil { // leading whitespace is not captured
		return nil, err
	}
	s.capturing, s.capt = true, nil
	err := s.skipValue()
	b := s.capt
	s.capturing, s.capt = false, nil
	return b, err
}

// captureString is captureValue for a value that must be a string (an
// object member name); c is the already-peeked first byte.
func (s *scanner) captureString(c byte) ([]byte, error) {
	if c != '"' {
		return nil, s.syntax("expected string for object member name, found %q", c)
	}
	s.capturing, s.capt = true, nil
	err := s.skipString()
	b := s.capt
	s.capturing, s.capt = false, nil
	return b, err
}
