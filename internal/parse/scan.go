package parse

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds the JSON scanner: one pass over a record's bytes that
// validates them as JSON (RFC 8259, as encoding/json.Valid judges it) and
// notes where the values kvaudit needs lie. Values are decoded later, and
// only those that are used.

// maxDepth is encoding/json's nesting limit, kept equal so that both agree
// on which input is valid. It also bounds the scanner's recursion.
const maxDepth = 10000

// Value kinds, from a value's first byte.
const (
	kNone byte = iota // absent
	kString
	kNumber
	kObject
	kArray
	kTrue
	kFalse
	kNull
)

// String flags, set while scanning a string.
const (
	fEscape byte = 1 << iota // has a backslash escape: must be unescaped
	fHigh                    // has a byte ≥ 0x80: UTF-8 must be checked
)

// strClass classifies bytes inside a JSON string: 0 is an ordinary byte.
var strClass = func() (t [256]byte) {
	for c := 0; c < 0x20; c++ {
		t[c] = 1 // control characters are invalid inside strings
	}
	t['"'] = 2
	t['\\'] = 3
	for c := 0x80; c < 0x100; c++ {
		t[c] = 4
	}
	return t
}()

// scanner validates JSON values in b. Methods return the index just past
// the value, or -1 after recording why in errPos/errMsg; errEOF says the
// data ended before the value did (more input might complete it).
type scanner struct {
	b      []byte
	flags  byte // flags of the last string scanned
	errPos int
	errMsg string
	errEOF bool
	numOK  bool // with errEOF: the data ended just after a complete number
}

func (s *scanner) fail(i int, msg string) int {
	s.errPos, s.errMsg, s.errEOF, s.numOK = i, msg, false, false
	return -1
}

func (s *scanner) eof(i int) int {
	s.errPos, s.errMsg, s.errEOF, s.numOK = i, "unexpected end of data", true, false
	return -1
}

// skipWS returns the index of the first non-whitespace byte at or after i.
func (s *scanner) skipWS(i int) int {
	b := s.b
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
			continue
		}
		break
	}
	return i
}

// str scans a string whose opening quote is at i-1; it sets s.flags.
func (s *scanner) str(i int) int {
	b := s.b
	var flags byte
	for {
		if i = skipPlain(b, i); i >= len(b) {
			return s.eof(i)
		}
		// Most strings end at the first special byte: test for '"' first.
		switch c := b[i]; {
		case c == '"':
			s.flags = flags
			return i + 1
		case c == '\\':
			flags |= fEscape
			if i+1 >= len(b) {
				return s.eof(i + 1)
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for k := i + 2; k < i+6; k++ {
					if k >= len(b) {
						return s.eof(k)
					}
					if !isHex(b[k]) {
						return s.fail(k, "invalid \\u escape in string")
					}
				}
				i += 6
			default:
				return s.fail(i+1, "invalid escape in string")
			}
		case c < 0x20:
			return s.fail(i, "control character in string")
		default: // ≥ 0x80: checked when decoded, as encoding/json does
			flags |= fHigh
			i++
		}
	}
}

// skipPlain returns the index of the first byte at or after i that is
// special in a JSON string ('"', '\\', a control character or a byte ≥
// 0x80), or len(b). Strings are mostly plain ASCII: it tests eight bytes at
// a time.
func skipPlain(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if m := specialMask(binary.LittleEndian.Uint64(b[i : i+8])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(b) && strClass[b[i]] == 0 {
		i++
	}
	return i
}

// skipPlainString is skipPlain for a string.
func skipPlainString(s string, i int) int {
	for ; i+8 <= len(s); i += 8 {
		t := s[i : i+8] // one bounds check, so that the loads combine
		x := uint64(t[0]) | uint64(t[1])<<8 | uint64(t[2])<<16 | uint64(t[3])<<24 |
			uint64(t[4])<<32 | uint64(t[5])<<40 | uint64(t[6])<<48 | uint64(t[7])<<56
		if m := specialMask(x); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(s) && strClass[s[i]] == 0 {
		i++
	}
	return i
}

// specialMask marks the high bit of each byte of x (little-endian) that is
// '"' or '\\' (zero after the xor), below 0x20, or ≥ 0x80. Borrows may mark
// bytes after a special one, never before: the lowest mark is the first
// special byte.
func specialMask(x uint64) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q := x ^ (lo * '"')
	bs := x ^ (lo * '\\')
	return ((q-lo)&^q | (bs-lo)&^bs | (x - lo*0x20) | x) & hi
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number scans a JSON number starting at i.
func (s *scanner) number(i int) int {
	b := s.b
	if b[i] == '-' {
		i++
		if i >= len(b) {
			return s.eof(i)
		}
	}
	switch {
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i++
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return s.fail(i, "invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) {
			return s.eof(i)
		}
		if !isDigit(b[i]) {
			return s.fail(i, "invalid number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) {
			return s.eof(i)
		}
		if !isDigit(b[i]) {
			return s.fail(i, "invalid number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	// A number running to the end of the data may go on in more input.
	if i >= len(b) {
		s.eof(i)
		s.numOK = true
		return -1
	}
	return i
}

func (s *scanner) literal(i int, lit string) int {
	b := s.b
	for k := 0; k < len(lit); k++ {
		if i+k >= len(b) {
			return s.eof(i + k)
		}
		if b[i+k] != lit[k] {
			return s.fail(i+k, "invalid literal")
		}
	}
	return i + len(lit)
}

// kindOf tells a value's kind from its first byte; kNone if no value starts so.
func kindOf(c byte) byte {
	switch c {
	case '"':
		return kString
	case '{':
		return kObject
	case '[':
		return kArray
	case 't':
		return kTrue
	case 'f':
		return kFalse
	case 'n':
		return kNull
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return kNumber
	}
	return kNone
}

// value scans any value starting at i (no leading whitespace), nested in
// depth containers.
func (s *scanner) value(i, depth int) int {
	b := s.b
	if i >= len(b) {
		return s.eof(i)
	}
	switch b[i] {
	case '"':
		return s.str(i + 1)
	case '{':
		return s.object(i, depth+1)
	case '[':
		return s.array(i, depth+1)
	case 't':
		return s.literal(i, "true")
	case 'f':
		return s.literal(i, "false")
	case 'n':
		return s.literal(i, "null")
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return s.number(i)
	}
	return s.fail(i, "invalid character looking for value")
}

// object scans an object whose '{' is at i, at nesting depth depth.
func (s *scanner) object(i, depth int) int {
	if depth > maxDepth {
		return s.fail(i, "exceeded max depth")
	}
	b := s.b
	i = s.skipWS(i + 1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) {
			return s.eof(i)
		}
		if b[i] != '"' {
			return s.fail(i, "expected object key")
		}
		if i = s.str(i + 1); i < 0 {
			return -1
		}
		if i = s.colon(i); i < 0 {
			return -1
		}
		if i = s.value(i, depth); i < 0 {
			return -1
		}
		var done bool
		if i, done = s.next(i, '}'); i < 0 || done {
			return i
		}
	}
}

// array scans an array whose '[' is at i, at nesting depth depth.
func (s *scanner) array(i, depth int) int {
	if depth > maxDepth {
		return s.fail(i, "exceeded max depth")
	}
	b := s.b
	i = s.skipWS(i + 1)
	if i < len(b) && b[i] == ']' {
		return i + 1
	}
	for {
		if i = s.value(i, depth); i < 0 {
			return -1
		}
		var done bool
		if i, done = s.next(i, ']'); i < 0 || done {
			return i
		}
	}
}

// colon skips whitespace, ':' and whitespace after an object key.
func (s *scanner) colon(i int) int {
	b := s.b
	i = s.skipWS(i)
	if i >= len(b) {
		return s.eof(i)
	}
	if b[i] != ':' {
		return s.fail(i, "expected ':' after object key")
	}
	return s.skipWS(i + 1)
}

// next skips whitespace and a ',' (then whitespace) or the closing byte.
// done reports that the container ended; i is then just past closing.
func (s *scanner) next(i int, closing byte) (int, bool) {
	b := s.b
	i = s.skipWS(i)
	if i >= len(b) {
		return s.eof(i), false
	}
	switch b[i] {
	case ',':
		return s.skipWS(i + 1), false
	case closing:
		return i + 1, true
	}
	if closing == '}' {
		return s.fail(i, "expected ',' or '}' after object value"), false
	}
	return s.fail(i, "expected ',' or ']' after array element"), false
}

// validJSON reports whether raw is exactly one JSON value, with optional
// whitespace around it.
func validJSON(raw []byte) bool {
	s := scanner{b: raw}
	start := s.skipWS(0)
	i := s.value(start, 0)
	if i < 0 {
		// A number at the very end is complete here: there is no more input.
		return s.numOK && start < len(raw) && kindOf(raw[start]) == kNumber
	}
	return s.skipWS(i) == len(raw)
}

// appendClean appends the valid JSON value raw, without whitespace between
// tokens if compact, and with each byte of invalid UTF-8 replaced by U+FFFD
// if fix (what a decoder would read there anyway).
func appendClean(dst, raw []byte, compact, fix bool) []byte {
	inStr := false
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c >= utf8.RuneSelf:
			size := 1
			if fix {
				var r rune
				if r, size = utf8.DecodeRune(raw[i:]); r == utf8.RuneError && size == 1 {
					dst = append(dst, "\uFFFD"...)
					i++
					continue
				}
			}
			dst = append(dst, raw[i:i+size]...)
			i += size
			continue
		case inStr:
			if c == '\\' && i+1 < len(raw) {
				dst = append(dst, c, raw[i+1])
				i += 2
				continue
			}
			inStr = c != '"'
		case c == ' ', c == '\t', c == '\n', c == '\r':
			if compact {
				i++
				continue
			}
		case c == '"':
			inStr = true
		}
		dst = append(dst, c)
		i++
	}
	return dst
}

// appendUnquoted appends the decoded content of a JSON string (without its
// quotes) that the scanner accepted, with its flags. It decodes as
// encoding/json does: escapes resolved, a surrogate half that is not part of
// a valid pair and every byte of invalid UTF-8 become U+FFFD.
func appendUnquoted(dst, s []byte, flags byte) []byte {
	if flags == 0 || flags == fHigh && utf8.Valid(s) {
		return append(dst, s...)
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c == '\\' {
			if i+1 >= len(s) {
				break // cannot happen for scanned strings; never panic
			}
			switch s[i+1] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := getu4(s[i:])
				if r < 0 {
					return dst
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if r1 := getu4(s[i:]); r1 >= 0 {
						if dec := utf16.DecodeRune(r, r1); dec != utf8.RuneError {
							dst = utf8.AppendRune(dst, dec)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, s[i+1])
			}
			i += 2
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, "\uFFFD"...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}

// getu4 decodes the \uXXXX escape at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// Fields of a record that the record scanner locates.
const (
	fTime = iota
	fResourceID
	fOperationName
	fOperationVersion
	fCategory
	fResultType
	fResultSignature
	fResultDescription
	fDurationMs
	fCallerIP
	fCorrelationID
	fIdentity
	fProperties
	// in properties
	fHTTPStatus
	fRequestURI
	fID
	fClientInfo
	fTLSVersion
	// in identity
	fClaim
	// in identity.claim
	fOID
	fOIDURI
	fUPN
	fUPNURI
	fUniqueName
	fAppID
	nFields
)

// Object levels the record scanner looks into.
const (
	lvTop = iota
	lvProperties
	lvIdentity
	lvClaim
)

// span locates a value in the scanned bytes: for a string its content
// between the quotes (with the string's flags), else the whole value.
type span struct {
	a, b  int
	kind  byte
	flags byte
}

// kvSpan locates an unknown top-level member: the key with its quotes, and
// the value.
type kvSpan struct{ ka, kb, va, vb int }

// recScan scans one record object, validating all of it and locating the
// fields of interest. A key that occurs twice counts by its last value, as
// with encoding/json.
type recScan struct {
	scanner
	f     [nFields]span
	extra []kvSpan
	key   []byte // unescaped key scratch
}

// record scans b, which must hold one object with optional whitespace
// before it, and returns the index of the object's '{' and just past its
// '}', or end = -1 with the reason in s.errMsg.
func (s *recScan) record(b []byte) (start, end int) {
	s.b = b
	s.f = [nFields]span{}
	s.extra = s.extra[:0]
	i := s.skipWS(0)
	if i >= len(b) {
		return i, s.eof(i)
	}
	if b[i] != '{' {
		// Say "not an object" only of valid JSON; else say what is wrong.
		j := s.value(i, 0)
		if j < 0 && s.numOK && kindOf(b[i]) == kNumber {
			j = len(b) // a number ending the data is complete: no more will come
		}
		if j >= 0 && s.skipWS(j) == len(b) {
			return i, s.fail(i, "not a JSON object")
		}
		if j >= 0 {
			return i, s.fail(s.skipWS(j), "invalid character after top-level value")
		}
		return i, -1
	}
	return i, s.obj(i, 1, lvTop)
}

// obj scans an object at i, depth containers deep, whose keys are looked up
// at level lv.
func (s *recScan) obj(i, depth, lv int) int {
	if depth > maxDepth {
		return s.fail(i, "exceeded max depth")
	}
	b := s.b
	i = s.skipWS(i + 1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) {
			return s.eof(i)
		}
		if b[i] != '"' {
			return s.fail(i, "expected object key")
		}
		ka := i
		if i = s.str(i + 1); i < 0 {
			return -1
		}
		kb := i
		key := b[ka+1 : kb-1]
		if s.flags&fEscape != 0 {
			// "ti\u006de" is "time" to encoding/json; so it is here.
			s.key = appendUnquoted(s.key[:0], key, s.flags)
			key = s.key
		}
		id := lookup(lv, key)
		if i = s.colon(i); i < 0 {
			return -1
		}
		va := i
		if i >= len(b) {
			return s.eof(i)
		}
		open := b[i] == '{'
		switch id {
		case fProperties:
			s.clear(fHTTPStatus, fTLSVersion)
			if open {
				i = s.obj(i, depth+1, lvProperties)
			} else {
				i = s.value(i, depth)
			}
		case fIdentity:
			s.clear(fClaim, fAppID)
			if open {
				i = s.obj(i, depth+1, lvIdentity)
			} else {
				i = s.value(i, depth)
			}
		case fClaim:
			s.clear(fOID, fAppID)
			if open {
				i = s.obj(i, depth+1, lvClaim)
			} else {
				i = s.value(i, depth)
			}
		default:
			i = s.value(i, depth)
		}
		if i < 0 {
			return -1
		}
		switch {
		case id >= 0:
			sp := span{a: va, b: i, kind: kindOf(b[va])}
			if sp.kind == kString {
				sp.a, sp.b, sp.flags = va+1, i-1, s.flags
			}
			s.f[id] = sp
		case lv == lvTop:
			s.extra = append(s.extra, kvSpan{ka, kb, va, i})
		}
		var done bool
		if i, done = s.next(i, '}'); i < 0 || done {
			return i
		}
	}
}

func (s *recScan) clear(from, to int) {
	for k := from; k <= to; k++ {
		s.f[k] = span{}
	}
}

// lookup returns the field of key at level lv, or -1.
func lookup(lv int, key []byte) int {
	switch lv {
	case lvTop:
		switch string(key) {
		case "time":
			return fTime
		case "resourceId":
			return fResourceID
		case "operationName":
			return fOperationName
		case "operationVersion":
			return fOperationVersion
		case "category":
			return fCategory
		case "resultType":
			return fResultType
		case "resultSignature":
			return fResultSignature
		case "resultDescription":
			return fResultDescription
		case "durationMs":
			return fDurationMs
		case "callerIpAddress":
			return fCallerIP
		case "correlationId":
			return fCorrelationID
		case "identity":
			return fIdentity
		case "properties":
			return fProperties
		}
	case lvProperties:
		switch string(key) {
		case "httpStatusCode":
			return fHTTPStatus
		case "requestUri":
			return fRequestURI
		case "id":
			return fID
		case "clientInfo":
			return fClientInfo
		case "tlsVersion":
			return fTLSVersion
		}
	case lvIdentity:
		if string(key) == "claim" {
			return fClaim
		}
	case lvClaim:
		switch string(key) {
		case "oid":
			return fOID
		case claimObjectID:
			return fOIDURI
		case "upn":
			return fUPN
		case claimUPN:
			return fUPNURI
		case "unique_name":
			return fUniqueName
		case "appid":
			return fAppID
		}
	}
	return -1
}

// Long claim names, as Azure Resource Manager logs them.
const (
	claimObjectID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
	claimUPN      = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
)
