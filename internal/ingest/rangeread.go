package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/kvaudit/kvaudit/internal/azstore"
)

// defaultRangeBytes is how much one ranged GET asks for, and the size of
// the one buffer a read holds: small enough that its body arrives well
// inside azcore's 60 s try timeout and costs little memory, large enough
// that the requests cost little beside the rows they produce.
const defaultRangeBytes = 4 << 20

// maxRangeRetries bounds how often one range is asked for again after its
// body broke off (a dropped connection, a try timeout).
const maxRangeRetries = 3

// errBlobChanged says the blob is no longer the one being read: re-created
// (a new creation time), shorter than the length seen, deleted, or — for a
// blob that is not an append blob — rewritten. What was read before it is
// still the old lineage's and stays valid.
var errBlobChanged = errors.New("blob changed while reading")

// rangeReader reads [pos, end) of one blob as consecutive ranged GETs of at
// most size bytes each. Each range is read whole into one buffer, reused
// from range to range, before any of its bytes is returned.
//
// Reading the range whole is what keeps the read independent of the
// writes: the parser that consumes these bytes stops whenever the table
// writer has its transactions in flight, and a body left half-read that
// long would stay open across them. azcore's try timeout runs until the
// body is closed, not until its headers arrive (runtime/policy_retry.go,
// contextCancelReadCloser, azcore v1.23), so a streamed body failed with
// "context deadline exceeded" once a range's rows took longer to write
// than the try timeout — slow or throttled tables made the read fail. A
// try now covers one request and its at most size bytes, at network speed.
//
// Azure Monitor's PT1H.json is an append blob: bytes once written never
// change, so the ranges carry no If-Match (an ETag changes with every
// append, and a condition on it would fail a long read of a live blob with
// 412). A re-created blob is a new lineage, told by its creation time,
// which every response carries and which is checked before any of its bytes
// are used; so one read never mixes two lineages. A blob of another type can
// be rewritten in place: its ranges are pinned to the ETag of the first.
type rangeReader struct {
	ctx      context.Context
	bc       *blob.Client
	pos, end int64 // pos: the first byte not yet asked for
	size     int64
	created  time.Time // the lineage being read; zero: taken from the first response

	etag  *azcore.ETag // set for a blob that is not an append blob
	typed bool         // the first response was seen
	buf   []byte       // the current range; its array is reused
	next  int          // buf[next:] is not yet returned
}

// errBodyBroken marks a response body that ended before the bytes its
// Content-Length promised: the range is asked for again from there.
var errBodyBroken = errors.New("body broke off")

// open reads the next range, from pos, whole into the buffer, replacing the
// previous range (which must have been returned). A body that breaks off
// is asked for again from where it stopped, at most maxRangeRetries times;
// then the error is azstore.ErrTransient. A blob found changed is
// errBlobChanged, and none of that range's bytes are returned. On an error
// pos stays at the range's start, so a later call asks for it again.
func (r *rangeReader) open() error {
	n := min(r.size, r.end-r.pos)
	// One buffer per read, of our own size at most, whatever length the
	// blob claimed. The first range is the largest: later ones are at
	// most size, and there is a later one only if the first was size.
	if int64(cap(r.buf)) < n {
		r.buf = make([]byte, 0, n)
	}
	r.buf, r.next = r.buf[:0], 0
	for retries := 0; ; retries++ {
		at := r.pos + int64(len(r.buf))
		err := r.get(at, n-int64(len(r.buf)))
		if err == nil {
			break
		}
		switch {
		case !errors.Is(err, errBodyBroken):
		case r.ctx.Err() != nil:
			err = r.ctx.Err()
		case retries == maxRangeRetries:
			err = fmt.Errorf("%w: read from %d: %w", azstore.ErrTransient, r.pos, err)
		default:
			continue
		}
		r.buf = r.buf[:0]
		return err
	}
	r.pos += n
	return nil
}

// get asks for [at, at+want) and appends its bytes to buf, never more than
// want of them: the response's Content-Length is checked against want
// before a byte is read. A body that ends early leaves what it gave in buf
// and returns errBodyBroken.
func (r *rangeReader) get(at, want int64) error {
	opts := &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: at, Count: want}}
	if r.etag != nil {
		opts.AccessConditions = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: r.etag}}
	}
	resp, err := r.bc.DownloadStream(r.ctx, opts)
	if err = azstore.Classify(err); err != nil {
		if errors.Is(err, azstore.ErrInvalidRange) || errors.Is(err, azstore.ErrNotFound) || errors.Is(err, azstore.ErrConflict) {
			return fmt.Errorf("%w: %w", errBlobChanged, err)
		}
		return fmt.Errorf("read from %d: %w", at, err)
	}
	defer resp.Body.Close()
	created := derefTime(resp.CreationTime)
	switch {
	case r.created.IsZero():
		r.created = created
	case !created.Equal(r.created):
		return fmt.Errorf("%w: re-created at %s (reading the blob created at %s)", errBlobChanged, created.Format(time.RFC3339), r.created.Format(time.RFC3339))
	}
	// A size read from storage is a claim: anything but what was asked
	// for means the blob is not the one whose length was seen.
	if got := deref(resp.ContentLength); got != want {
		return fmt.Errorf("%w: %d bytes at %d, asked for %d", errBlobChanged, got, at, want)
	}
	if !r.typed {
		r.typed = true
		if deref(resp.BlobType) != blob.BlobTypeAppendBlob && resp.ETag != nil {
			r.etag = resp.ETag
		}
	}
	start := len(r.buf)
	m, err := io.ReadFull(resp.Body, r.buf[start:start+int(want)])
	r.buf = r.buf[:start+m]
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the response promised more
		}
		return fmt.Errorf("%w at %d: %w", errBodyBroken, at+int64(m), err)
	}
	return nil
}

// Read returns the blob's bytes in order, reading the next range whole
// when the current one has been returned. Its errors are open's.
func (r *rangeReader) Read(p []byte) (int, error) {
	if r.next == len(r.buf) {
		if r.pos >= r.end {
			return 0, io.EOF
		}
		if len(p) == 0 {
			return 0, nil
		}
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf[r.next:])
	r.next += n
	return n, nil
}

// Close lets the buffer go. The reader holds no connection between Reads;
// calling Close again does nothing.
func (r *rangeReader) Close() error {
	r.buf, r.next = nil, 0
	return nil
}
