package parse

import (
	"bytes"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// This file turns a scanned record into a Record: it decodes the located
// values and derives vault, status and object fields.

// rng is a range of the string scratch buffer.
type rng struct{ a, b int }

// Record string fields filled from string values, in the order decoded.
var stringFields = [...]int{
	fResourceID, fOperationName, fOperationVersion, fCategory, fResultType,
	fResultSignature, fResultDescription, fCallerIP, fCorrelationID,
	fRequestURI, fID, fClientInfo, fTLSVersion,
	fOID, fOIDURI, fUPN, fUPNURI, fUniqueName, fAppID,
}

// repeating marks the fields whose values mostly repeat from record to
// record: a blob holds one vault's records, of few callers and operations.
// Their recent values are kept, and reused when the logged bytes are the
// same, which saves decoding, copying and (for resourceId) deriving them.
var repeating = [nFields]bool{
	fResourceID: true, fOperationName: true, fOperationVersion: true, fCategory: true,
	fResultType: true, fResultSignature: true, fCallerIP: true, fClientInfo: true,
	fTLSVersion: true, fOID: true, fOIDURI: true, fUPN: true, fUPNURI: true,
	fUniqueName: true, fAppID: true,
}

// maxRecent is the longest value (as logged) kept in recent.
const maxRecent = 512

// recent holds a field's last few values.
type recent struct {
	v    [4]recentValue
	hit  int // slot of the last hit, tried first
	next int // slot to fill next
}

// recentValue is a value as logged and decoded; for resourceId, with the
// parts derived from it.
type recentValue struct {
	raw            []byte
	s              string
	sub, rg, vault string
	set            bool
}

func (c *recent) find(raw []byte) (*recentValue, bool) {
	for j := range len(c.v) {
		k := (c.hit + j) % len(c.v)
		if v := &c.v[k]; v.set && bytes.Equal(v.raw, raw) {
			c.hit = k
			return v, true
		}
	}
	return nil, false
}

// put replaces the oldest value, reusing its buffer.
func (c *recent) put(raw []byte, s string) *recentValue {
	k := c.next
	c.next = (k + 1) % len(c.v)
	c.hit = k
	v := &c.v[k]
	*v = recentValue{raw: append(v.raw[:0], raw...), s: s, set: true}
	return v
}

// normalizer holds the scratch space reused from record to record.
type normalizer struct {
	sc    recScan
	str   []byte // decoded strings of the current record, one allocation at the end
	extra []byte // Extra of the current record

	cstr []byte // decoded short repeating strings of the current record

	recent   [nFields]recent
	idParts  recentValue // parts of a resourceId too long for recent
	blob     string
	blobPath BlobPath
	blobOK   bool
	// account is the logs account of blob; defaultAccount the one a blob
	// identity without an account part stands for.
	account, defaultAccount string
}

// setBlob sets the blob the next records come from.
func (n *normalizer) setBlob(blob, defaultAccount string) {
	n.blob, n.defaultAccount = blob, defaultAccount
	n.blobPath, n.blobOK = ParseBlobPath(blob)
	n.account, _ = SplitBlobID(blob)
	if n.account == "" {
		n.account = defaultAccount
	}
}

// normalize fills rec from the record just scanned in data (sc.record
// succeeded), the object's '{' being at blob offset off. It returns the
// reason when the record is unusable (bad time).
func (n *normalizer) normalize(rec *Record, data []byte, off int64) string {
	f := &n.sc.f
	// Time first: a record without one is rejected before any other work.
	t, reason := n.time(data, f[fTime])
	if reason != "" {
		return reason
	}
	// Decode the strings, except those seen lately, into two buffers: cb
	// for short repeating values, which the recent cache keeps, and sb for
	// the rest. The cache then holds on to small strings only, never to a
	// long record's text.
	sb, cb := n.str[:0], n.cstr[:0]
	var r [nFields]rng
	var inC [nFields]bool
	var reused [nFields]*recentValue
	for _, k := range stringFields {
		sp := f[k]
		if sp.kind != kString {
			continue
		}
		v := data[sp.a:sp.b]
		if repeating[k] && len(v) <= maxRecent {
			if rv, ok := n.recent[k].find(v); ok {
				reused[k] = rv
				continue
			}
			a := len(cb)
			cb = appendUnquoted(cb, v, sp.flags)
			r[k], inC[k] = rng{a, len(cb)}, true
			continue
		}
		a := len(sb)
		sb = appendUnquoted(sb, v, sp.flags)
		r[k] = rng{a, len(sb)}
	}

	// Vault, subscription and resource group, from resourceId or else the blob path.
	var sub, rg, vault rng
	hasID := f[fResourceID].kind == kString && f[fResourceID].b > f[fResourceID].a
	freshID := hasID && reused[fResourceID] == nil
	if freshID {
		buf := &sb
		if inC[fResourceID] {
			buf = &cb
		}
		id := r[fResourceID]
		sub, rg, vault = resourceIDParts((*buf)[id.a:id.b])
		sub, rg, vault = shift(sub, id.a), shift(rg, id.a), shift(vault, id.a)
		if hasUpper((*buf)[vault.a:vault.b]) {
			a := len(*buf)
			*buf = appendLower(*buf, (*buf)[vault.a:vault.b])
			vault = rng{a, len(*buf)}
		}
	}

	// Object name and type, from properties.id, else requestUri (in sb).
	var objType string
	var obj rng
	for _, k := range [...]int{fID, fRequestURI} {
		u := sb[r[k].a:r[k].b]
		typ, a, b, esc := objectRef(u)
		if typ == "" {
			continue
		}
		objType, obj = typ, shift(rng{a, b}, r[k].a)
		if esc {
			a := len(sb)
			sb = appendPathUnescaped(sb, sb[obj.a:obj.b])
			obj = rng{a, len(sb)}
		}
		break
	}

	// One allocation holds the record's new strings (two when short
	// repeating ones are new too); slices of it are safe to keep after the
	// buffers are reused.
	s, cs := string(sb), ""
	if len(cb) > 0 {
		cs = string(cb)
	}
	n.str, n.cstr = sb, cb
	var strs [nFields]string
	for _, k := range stringFields {
		switch {
		case reused[k] != nil:
			strs[k] = reused[k].s
		case inC[k]:
			strs[k] = cs[r[k].a:r[k].b]
			reused[k] = n.recent[k].put(data[f[k].a:f[k].b], strs[k])
		case f[k].kind == kString:
			strs[k] = s[r[k].a:r[k].b]
		}
	}
	if freshID {
		str := s
		if inC[fResourceID] {
			str = cs
		}
		rec := reused[fResourceID]
		if rec == nil { // too long to be kept: keep its parts here only
			rec = &n.idParts
		}
		rec.sub, rec.rg, rec.vault = str[sub.a:sub.b], str[rg.a:rg.b], str[vault.a:vault.b]
		reused[fResourceID] = rec
	}
	first := func(ks ...int) string {
		for _, k := range ks {
			if strs[k] != "" {
				return strs[k]
			}
		}
		return ""
	}

	// Numbers that may be logged as strings.
	dur, hasDur := n.number(data, f[fDurationMs], parseDuration, parseDurationString)
	code, _ := n.number(data, f[fHTTPStatus], parseStatusCode, parseStatusCode)
	httpStatus := int(code)
	status := httpStatus
	if status <= 0 {
		status = statusFromSignature(strs[fResultSignature])
	}

	*rec = Record{
		Time:              t,
		ResourceID:        strs[fResourceID],
		OperationName:     strs[fOperationName],
		OperationVersion:  strs[fOperationVersion],
		Category:          strs[fCategory],
		ResultType:        strs[fResultType],
		ResultSignature:   strs[fResultSignature],
		ResultDescription: strs[fResultDescription],
		DurationMs:        dur,
		HasDuration:       hasDur,
		CallerIPAddress:   strs[fCallerIP],
		CorrelationID:     strs[fCorrelationID],
		Identity: Identity{
			ObjectID: first(fOID, fOIDURI),
			UPN:      first(fUPN, fUPNURI, fUniqueName),
			AppID:    strs[fAppID],
		},
		HTTPStatusCode: httpStatus,
		Status:         status,
		RequestURI:     strs[fRequestURI],
		ID:             strs[fID],
		ObjectName:     s[obj.a:obj.b],
		ObjectType:     objType,
		ClientInfo:     strs[fClientInfo],
		TLSVersion:     strs[fTLSVersion],
		Blob:           n.blob,
		Account:        n.account,
		Offset:         off,
	}
	if hasID {
		rv := reused[fResourceID]
		rec.SubscriptionID, rec.ResourceGroup, rec.Vault = rv.sub, rv.rg, rv.vault
	} else if n.blobOK {
		rec.SubscriptionID, rec.ResourceGroup, rec.Vault = n.blobPath.SubscriptionID, n.blobPath.ResourceGroup, n.blobPath.Vault
	}

	if sp := f[fProperties]; sp.kind != kNone && sp.kind != kNull {
		rec.Properties = raw(data, sp)
	}
	// Claims: the claim value when identity has one, else identity itself
	// (a plain string, or an object without claim), so nothing logged is lost.
	if sp := f[fClaim]; sp.kind != kNone && sp.kind != kNull {
		rec.Identity.Claims = raw(data, sp)
	} else if sp := f[fIdentity]; sp.kind != kNone && sp.kind != kNull {
		rec.Identity.Claims = raw(data, sp)
	}
	if len(n.sc.extra) > 0 {
		e := append(n.extra[:0], '{')
		for i, kv := range n.sc.extra {
			if i > 0 {
				e = append(e, ',')
			}
			e = append(e, data[kv.ka:kv.kb]...)
			e = append(e, ':')
			e = append(e, data[kv.va:kv.vb]...)
		}
		e = append(e, '}')
		n.extra = e
		rec.Extra = e
	}
	return ""
}

// raw returns the JSON text of the value at sp, quotes included for strings.
func raw(data []byte, sp span) []byte {
	if sp.kind == kString {
		return data[sp.a-1 : sp.b+1]
	}
	return data[sp.a:sp.b]
}

func shift(x rng, by int) rng { return rng{x.a + by, x.b + by} }

// time decodes and parses the time field.
func (n *normalizer) time(data []byte, sp span) (time.Time, string) {
	switch sp.kind {
	case kNone:
		return time.Time{}, "time: missing"
	case kNull:
		return time.Time{}, "time: null"
	case kString:
	default:
		return time.Time{}, "time: not a string"
	}
	v := data[sp.a:sp.b]
	if sp.flags != 0 {
		n.str = appendUnquoted(n.str[:0], v, sp.flags)
		v = n.str
	}
	t, ok := parseTime(v)
	if !ok {
		if len(v) > 64 {
			v = append(v[:61:61], "..."...)
		}
		return time.Time{}, "time: cannot parse " + strconv.Quote(string(v))
	}
	return t, ""
}

// number reads a value that may be logged as a JSON number or as a string
// holding one, with the parser for each; ok is false for any other kind.
func (n *normalizer) number(data []byte, sp span, fromNumber, fromString func([]byte) (float64, bool)) (float64, bool) {
	switch sp.kind {
	case kNumber:
		return fromNumber(data[sp.a:sp.b])
	case kString:
		v := data[sp.a:sp.b]
		if sp.flags != 0 {
			v = appendUnquoted(n.extra[:0], v, sp.flags)
			n.extra = v[:0]
		}
		return fromString(v)
	}
	return 0, false
}

// parseDurationString accepts a string holding exactly a JSON number.
func parseDurationString(b []byte) (float64, bool) {
	if !isJSONNumber(b) {
		return 0, false
	}
	return parseDuration(b)
}

// isJSONNumber reports whether b is exactly one JSON number.
func isJSONNumber(b []byte) bool {
	if len(b) == 0 || kindOf(b[0]) != kNumber {
		return false
	}
	s := scanner{b: b}
	return s.number(0) < 0 && s.numOK
}

// parseDuration parses a JSON number (already validated) as float64.
func parseDuration(b []byte) (float64, bool) {
	// Fast path: up to 15 significant digits and a short fraction are exact
	// in float64, and one correctly rounded division by a power of ten gives
	// what strconv.ParseFloat gives.
	neg := false
	i := 0
	if i < len(b) && b[i] == '-' {
		neg, i = true, 1
	}
	var m uint64
	digits, frac := 0, 0
	for ; i < len(b) && isDigit(b[i]); i++ {
		m = m*10 + uint64(b[i]-'0')
		digits++
	}
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b) && isDigit(b[i]); i++ {
			m = m*10 + uint64(b[i]-'0')
			digits++
			frac++
		}
	}
	if i == len(b) && digits <= 15 && frac < len(pow10) {
		f := float64(m) / pow10[frac]
		if neg {
			f = -f
		}
		return f, true
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseStatusCode accepts a plain decimal integer of 1 to 9 digits (a JSON
// number with no sign, fraction or exponent, or such digits in a string);
// anything else is not a status.
func parseStatusCode(b []byte) (float64, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return float64(v), true
}

// statusFromSignature maps a resultSignature to an HTTP status: names are
// compared case-insensitively with spaces ignored ("Not Found", "NotFound"),
// a three-digit code is taken as is. 0 when unknown.
func statusFromSignature[S ~string | ~[]byte](sig S) int {
	var buf [32]byte
	n := 0
	for i := 0; i < len(sig); i++ {
		c := sig[i]
		if c == ' ' {
			continue
		}
		if n == len(buf) {
			return 0
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	key := buf[:n]
	if n == 3 && isDigit(key[0]) && isDigit(key[1]) && isDigit(key[2]) && key[0] >= '1' && key[0] <= '5' {
		return int(key[0]-'0')*100 + int(key[1]-'0')*10 + int(key[2]-'0')
	}
	switch string(key) {
	case "ok", "success", "succeeded":
		return 200
	case "created":
		return 201
	case "accepted":
		return 202
	case "nocontent":
		return 204
	case "badrequest":
		return 400
	case "unauthorized":
		return 401
	case "forbidden":
		return 403
	case "notfound":
		return 404
	case "methodnotallowed":
		return 405
	case "conflict":
		return 409
	case "gone":
		return 410
	case "preconditionfailed":
		return 412
	case "requestentitytoolarge", "payloadtoolarge":
		return 413
	case "toomanyrequests":
		return 429
	case "internalservererror":
		return 500
	case "notimplemented":
		return 501
	case "badgateway":
		return 502
	case "serviceunavailable":
		return 503
	case "gatewaytimeout":
		return 504
	}
	return 0
}

// parseTime parses a record time into UTC. The form Key Vault writes
// ("2024-04-03T14:03:10.7886260Z") is parsed by hand; anything else goes to
// time.Parse(time.RFC3339Nano), whose verdict the fast path never changes.
func parseTime(b []byte) (time.Time, bool) {
	if t, ok := parseTimeFast(b); ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// parseTimeFast accepts only YYYY-MM-DDTHH:MM:SS[.fraction]Z with fields
// in range, which time.Parse accepts with the same result.
func parseTimeFast(b []byte) (time.Time, bool) {
	if len(b) < len("2006-01-02T15:04:05Z") || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	ok := true
	num := func(s []byte, lo, hi int) int {
		v := 0
		for _, c := range s {
			if !isDigit(c) {
				ok = false
				return 0
			}
			v = v*10 + int(c-'0')
		}
		if v < lo || v > hi {
			ok = false
		}
		return v
	}
	year := num(b[0:4], 0, 9999)
	month := num(b[5:7], 1, 12)
	day := num(b[8:10], 1, 31)
	hour := num(b[11:13], 0, 23)
	minute := num(b[14:16], 0, 59)
	sec := num(b[17:19], 0, 59)
	if !ok || day > daysIn(time.Month(month), year) {
		return time.Time{}, false
	}
	nsec := 0
	if rest := b[19 : len(b)-1]; len(rest) > 0 {
		if len(rest) < 2 || rest[0] != '.' {
			return time.Time{}, false
		}
		for i, c := range rest[1:] {
			if !isDigit(c) {
				return time.Time{}, false
			}
			if i < 9 { // time.Parse drops digits past nanoseconds
				nsec = nsec*10 + int(c-'0')
			}
		}
		for i := len(rest) - 1; i < 9; i++ {
			nsec *= 10
		}
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func daysIn(m time.Month, year int) int {
	switch m {
	case time.February:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}

// hasUpper reports whether b may change when lower-cased: it has an ASCII
// capital or any non-ASCII byte.
func hasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' || c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// appendLower appends b lower-cased as strings.ToLower does.
func appendLower(dst, b []byte) []byte {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return append(dst, bytes.ToLower(b)...) // rare: vault names are ASCII
		}
	}
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// equalFold compares ASCII case-insensitively; lit must be lower case.
func equalFold[S ~string | ~[]byte](s S, lit string) bool {
	if len(s) != len(lit) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lit[i] {
			return false
		}
	}
	return true
}

// resourceIDParts finds the subscription, resource group and vault name in
// a resourceId such as
// /SUBSCRIPTIONS/<sub>/RESOURCEGROUPS/<rg>/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/<NAME>.
// Segment names match case-insensitively. The vault is the segment after
// VAULTS, or the last segment when there is none (a managed HSM, say).
func resourceIDParts[S ~string | ~[]byte](id S) (sub, rg, vault rng) {
	var prev rng // previous segment
	var last rng
	haveVault := false
	for i := 0; i < len(id); {
		for i < len(id) && id[i] == '/' {
			i++
		}
		a := i
		for i < len(id) && id[i] != '/' {
			i++
		}
		if i == a {
			break
		}
		seg := rng{a, i}
		if prev.b > prev.a {
			switch p := id[prev.a:prev.b]; {
			case equalFold(p, "subscriptions") && sub.b == sub.a:
				sub = seg
			case equalFold(p, "resourcegroups") && rg.b == rg.a:
				rg = seg
			case equalFold(p, "vaults") && !haveVault:
				vault, haveVault = seg, true
			}
		}
		prev, last = seg, seg
	}
	if !haveVault {
		vault = last
	}
	return sub, rg, vault
}

// objectRef finds the object a Key Vault URL names: https://<vault>/secrets/<name>[/<version>…]
// and likewise keys, certificates and their deleted… collections, also
// under an ARM path /subscriptions/…/vaults/<vault>/secrets/<name>. It
// returns the object type and the name's range in u, esc telling that it
// holds %-escapes. Collections (/secrets?…), certificate issuers and
// contacts, and the restore operations (POST /secrets/restore) name no object.
func objectRef[S ~string | ~[]byte](u S) (typ string, a, b int, esc bool) {
	// The path starts after the scheme and host, if any.
	i := 0
	for j := 0; j < len(u) && u[j] != '/' && u[j] != '?' && u[j] != '#'; j++ {
		if u[j] == ':' && j+2 < len(u) && u[j+1] == '/' && u[j+2] == '/' {
			for i = j + 3; i < len(u) && u[i] != '/' && u[i] != '?' && u[i] != '#'; i++ {
			}
			break
		}
	}
	ca, cb := segment(u, i)
	if ca == cb {
		return "", 0, 0, false
	}
	if equalFold(u[ca:cb], "subscriptions") {
		// An ARM path: the collection follows vaults/<vault>.
		for n := 0; ; n++ {
			if ca, cb = segment(u, cb); ca == cb || n == 16 {
				return "", 0, 0, false
			}
			if equalFold(u[ca:cb], "vaults") {
				break
			}
		}
		va, vb := segment(u, cb)
		if va == vb {
			return "", 0, 0, false
		}
		if ca, cb = segment(u, vb); ca == cb {
			return "", 0, 0, false
		}
	}
	na, nb := segment(u, cb)
	if na == nb {
		return "", 0, 0, false
	}
	ma, mb := segment(u, nb)
	more := ma < mb
	coll, name := u[ca:cb], u[na:nb]
	deleted := false
	switch {
	case equalFold(coll, "secrets"):
		typ = "secret"
	case equalFold(coll, "keys"):
		typ = "key"
	case equalFold(coll, "certificates"):
		typ = "certificate"
		if equalFold(name, "issuers") || equalFold(name, "contacts") {
			return "", 0, 0, false
		}
	case equalFold(coll, "deletedsecrets"):
		typ, deleted = "secret", true
	case equalFold(coll, "deletedkeys"):
		typ, deleted = "key", true
	case equalFold(coll, "deletedcertificates"):
		typ, deleted = "certificate", true
	default:
		return "", 0, 0, false
	}
	if !deleted && !more && equalFold(name, "restore") {
		return "", 0, 0, false
	}
	for k := na; k < nb; k++ {
		if u[k] == '%' {
			esc = true
			break
		}
	}
	return typ, na, nb, esc
}

// segment returns the next path segment of u at or after i, skipping
// slashes; a == b at the end of the path (end of u, '?' or '#').
func segment[S ~string | ~[]byte](u S, i int) (a, b int) {
	for i < len(u) && u[i] == '/' {
		i++
	}
	a = i
	for i < len(u) && u[i] != '/' && u[i] != '?' && u[i] != '#' {
		i++
	}
	return a, i
}

// appendPathUnescaped appends s with %XX escapes decoded, as
// url.PathUnescape does; s is appended unchanged if an escape is malformed.
func appendPathUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && (i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2])) {
			return append(dst, s...)
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			dst = append(dst, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		dst = append(dst, s[i])
	}
	return dst
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
