package parse

import (
	"strconv"
)

// Decoder normalizes single records given as JSON objects, as a Reader
// does record by record: Decode of a Reader's Raw, with the record's Blob
// and Offset, gives that Record again. A Decoder keeps scratch space and
// caches between calls, so it is not safe for concurrent use; its zero
// value is ready.
type Decoder struct {
	// Account is the logs account a record's Account names when its blob
	// identity does not name one: the first logs account's name.
	Account string

	norm normalizer
	set  bool // norm's blob fields are set
}

// Decode fills rec from data, one JSON object (whitespace around it is
// allowed), read from blob at offset off. It returns a *RecordError when
// data is not a usable record. rec's strings are its own; its raw fields
// (Properties, Claims, Extra) point into data or the Decoder's scratch
// space and are valid until the next call.
func (d *Decoder) Decode(data []byte, blob string, off int64, rec *Record) error {
	if !d.set || d.norm.blob != blob || d.norm.defaultAccount != d.Account {
		d.set = true
		d.norm.setBlob(blob, d.Account)
	}
	bad := func(reason string) error { return &RecordError{Blob: blob, Offset: off, Reason: reason} }
	sc := &d.norm.sc
	_, end := sc.record(data)
	if end < 0 {
		return bad(syntaxReason(&sc.scanner))
	}
	if skipSpace(data, end, true) != len(data) {
		return bad("invalid JSON at record byte " + strconv.Itoa(end) + ": data after the object")
	}
	if reason := d.norm.normalize(rec, data, off); reason != "" {
		return bad(reason)
	}
	return nil
}
