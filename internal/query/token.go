package query

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
)

// A continuation token says where a query stopped, in our own partition
// sequence (HAZARDS 5): the query it belongs to (a fingerprint of its
// table, key and filters), the window it pages through, the day partition
// it was reading, the last RowKey it examined there, and, when it stopped
// between two of Table Storage's own pages, the service's continuation
// for that partition.
//
// A token is opaque to callers: base64url of a small JSON object and a
// checksum. The checksum catches a token that was altered or cut; it is
// not a secret signature, and nothing relies on it for safety. Safety comes
// from validation: a token is accepted only if its fingerprint is the
// fingerprint of the query it comes back with, its window obeys the
// window rules, its day is one of the plan's days and its RowKey has the
// shape RowKey gives and lies inside the plan's window. The filter sent to
// storage is always rebuilt from the query's own parameters, never taken
// from the token, so even a forged token can only move the reading
// position inside the partitions of the query it comes with.
type token struct {
	V  int    `json:"v"`
	Q  string `json:"q"`            // plan fingerprint
	F  int64  `json:"f"`            // window From, Unix ns
	T  int64  `json:"t"`            // window To, Unix ns
	D  string `json:"d"`            // day partition being read
	A  string `json:"a,omitempty"`  // last RowKey examined in D
	NP string `json:"np,omitempty"` // service continuation in D
	NR string `json:"nr,omitempty"`
}

const (
	tokenVersion  = 1
	checksumBytes = 8
	maxServerKey  = 1024
)

func badToken(why string) error {
	return &ParamError{Param: ParamContinuation, Msg: "not a continuation of this query (" + why + "): pass the continuation of the previous page unchanged, with the same vault, caller, ip, object, operation and status"}
}

func checksum(payload []byte) []byte {
	h := sha256.New()
	h.Write([]byte("kvaudit continuation v1\x00"))
	h.Write(payload)
	return h.Sum(nil)[:checksumBytes]
}

func (t *token) encode() string {
	payload, _ := json.Marshal(t) // cannot fail: strings and integers
	return base64.RawURLEncoding.EncodeToString(append(payload, checksum(payload)...))
}

// decodeToken reads s. It checks the encoding and checksum and that s is
// exactly what encode gives for its content (so a token has one spelling),
// not whether the token fits a query: see [plan.check].
func decodeToken(s string) (*token, error) {
	if len(s) > maxTokenLen {
		return nil, badToken("too long")
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) <= checksumBytes {
		return nil, badToken("not a token")
	}
	payload, sum := raw[:len(raw)-checksumBytes], raw[len(raw)-checksumBytes:]
	if !bytes.Equal(sum, checksum(payload)) {
		return nil, badToken("altered or cut")
	}
	var t token
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil || dec.More() {
		return nil, badToken("not a token")
	}
	if t.V != tokenVersion {
		return nil, badToken("from another version")
	}
	if t.encode() != s {
		return nil, badToken("not a token")
	}
	return &t, nil
}

// window is the token's window, with the bounds the request gave checked
// against it: a request may leave a bound out (it then comes from the
// token) but may not change it.
func (t *token) window(req Window, lim Limits) (Window, error) {
	w := Window{From: time.Unix(0, t.F).UTC(), To: time.Unix(0, t.T).UTC(), FromGiven: true, ToGiven: true}
	if req.FromGiven && !req.From.Equal(w.From) || req.ToGiven && !req.To.Equal(w.To) {
		return Window{}, badToken("from or to differ from the first page's")
	}
	if err := checkWindow(w, lim); err != nil {
		return Window{}, badToken("window out of bounds")
	}
	return w, nil
}

// check validates t against the plan of the query it came with.
func (p *plan) check(t *token) error {
	if t.Q != p.fingerprint {
		return badToken("it belongs to another query")
	}
	if p.dayIndex(t.D) < 0 {
		return badToken("day outside the window")
	}
	if t.A != "" && (!index.IsRowKey(t.A) || t.A < p.lo || t.A >= p.hi) {
		return badToken("position outside the window")
	}
	if t.NR != "" && t.NP == "" {
		return badToken("incomplete position")
	}
	for _, s := range []string{t.NP, t.NR} {
		if len(s) > maxServerKey || !printableASCII(s) {
			return badToken("bad position")
		}
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// fingerprint hashes the parts that define a query, so that a token of one
// query is refused by another.
func fingerprint(parts ...string) string {
	h := sha256.New()
	h.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}
