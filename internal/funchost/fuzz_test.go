package funchost_test

import (
	"bytes"
	"errors"
	"testing"
	"testing/iotest"

	"github.com/kvaudit/kvaudit/internal/funchost"
)

// FuzzReadInvocation checks that ReadInvocation never panics, accepts
// exactly the bodies the encoding/json reference accepts and then agrees
// with it, and that a small metadata limit never changes a success.
func FuzzReadInvocation(f *testing.F) {
	for _, seed := range []string{
		hostBlobBody,
		hostTimerBody,
		`{"Metadata":{"name":"\"a\""},"Data":{"blob":"x"}}`,
		`{"Data":{"blob":"\"{\\\"time\\\":\\\"2026\\\"}\\n\""}}`,
		`{"D\u0061ta":{"b\u006cob":"\ud83d\ude00"},"Metadata":{"n\"":[1,{"a":null}]}}`,
		`{"Data":{"a":0,"b":-0.5,"c":1E9,"d":12.50e-3,"e":[true,false,null]}}`,
		`{"Data":5,"Data":{"b":1},"Metadata":null}`,
		`{"Data":{"a":01}}`,
		`{"Data":{"a":"` + "\xff\xfe" + `"},"Metadata":{"` + "\xc3" + `":1}}`,
		` {} `,
		`[]`,
		`{"a":1}x`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// Each byte captured costs at least one byte of input, so this
		// limit is never reached.
		limit := int64(len(body)) + 1
		inv, err := funchost.ReadInvocation(bytes.NewReader(body), limit)
		_, _, refErr := reference(body)
		if refErr != nil {
			if err == nil {
				t.Fatalf("accepted a body the reference rejects (%v): %q", refErr, body)
			}
			if !errors.Is(err, funchost.ErrMalformed) {
				t.Fatalf("rejected with %v, want ErrMalformed: %q", err, body)
			}
		} else {
			if err != nil {
				t.Fatalf("rejected a body the reference accepts: %v: %q", err, body)
			}
			checkAgainstReference(t, body, inv)
		}

		// Reads that end anywhere must not change the outcome.
		inv2, err2 := funchost.ReadInvocation(iotest.OneByteReader(bytes.NewReader(body)), limit)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("whole read err = %v, one-byte reads err = %v: %q", err, err2, body)
		}
		if err2 == nil {
			checkAgainstReference(t, body, inv2)
		}

		// A tight limit may fail with ErrTooLarge, but a success is still right.
		inv3, err3 := funchost.ReadInvocation(bytes.NewReader(body), 16)
		switch {
		case err3 == nil:
			checkAgainstReference(t, body, inv3)
		case errors.Is(err3, funchost.ErrTooLarge):
		case refErr == nil:
			t.Fatalf("limit 16: rejected a valid body with %v: %q", err3, body)
		}
	})
}

// FuzzEventGridEvents checks that reading an Event Grid event, whatever a
// topic's publisher or the host put in it, never panics, and that an
// event it returns with BlobCreated data has the url it names.
func FuzzEventGridEvents(f *testing.F) {
	for _, seed := range []string{
		hostEventGridBody,
		`{"Data":{"eventGridEvent":{"data":{"url":"https://x.blob.core.windows.net/c/b"}}}}`,
		`{"Data":{"eventGridEvent":[{"type":"t","data":{"url":5}}]}}`,
		`{"Data":{"eventGridEvent":"\"[{\\\"data\\\":null}]\""}}`,
		`{"Data":{},"Metadata":{"data":{"url":"u","eTag":"\"q\""}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		inv, err := funchost.ReadInvocation(bytes.NewReader(body), 1<<16, "eventGridEvent")
		if err != nil {
			return
		}
		evs, err := inv.EventGridEvents("eventGridEvent")
		if err != nil {
			if !errors.Is(err, funchost.ErrMalformed) && !errors.Is(err, funchost.ErrNoEvent) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		for _, e := range evs {
			d, err := e.BlobCreated()
			if err == nil && d.URL == "" {
				t.Fatalf("BlobCreated without a url: %+v", e)
			}
		}
	})
}
