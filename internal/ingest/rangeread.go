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

// defaultRangeBytes is how much one ranged GET asks for: small enough that
// its body arrives well inside azcore's 60 s try timeout, large enough that
// the requests cost little beside the rows they produce.
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
// most size bytes each, streaming each body.
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
	pos, end int64
	size     int64
	created  time.Time // the lineage being read; zero: taken from the first response

	etag    *azcore.ETag // set for a blob that is not an append blob
	typed   bool         // the first response was seen
	body    io.ReadCloser
	bodyEnd int64
	retries int
}

// open asks for the next range, from pos.
func (r *rangeReader) open() error {
	n := min(r.size, r.end-r.pos)
	opts := &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: r.pos, Count: n}}
	if r.etag != nil {
		opts.AccessConditions = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: r.etag}}
	}
	resp, err := r.bc.DownloadStream(r.ctx, opts)
	if err = azstore.Classify(err); err != nil {
		if errors.Is(err, azstore.ErrInvalidRange) || errors.Is(err, azstore.ErrNotFound) || errors.Is(err, azstore.ErrConflict) {
			return fmt.Errorf("%w: %w", errBlobChanged, err)
		}
		return fmt.Errorf("read from %d: %w", r.pos, err)
	}
	created := derefTime(resp.CreationTime)
	switch {
	case r.created.IsZero():
		r.created = created
	case !created.Equal(r.created):
		resp.Body.Close()
		return fmt.Errorf("%w: re-created at %s (reading the blob created at %s)", errBlobChanged, created.Format(time.RFC3339), r.created.Format(time.RFC3339))
	}
	if got := deref(resp.ContentLength); got != n {
		resp.Body.Close()
		return fmt.Errorf("%w: %d bytes at %d, asked for %d", errBlobChanged, got, r.pos, n)
	}
	if !r.typed {
		r.typed = true
		if deref(resp.BlobType) != blob.BlobTypeAppendBlob && resp.ETag != nil {
			r.etag = resp.ETag
		}
	}
	r.body, r.bodyEnd = resp.Body, r.pos+n
	return nil
}

// Read reads the blob's bytes in order, opening the next range when one
// ends. A body that breaks off is asked for again from where it stopped, at
// most maxRangeRetries times per range; then the error is transient.
func (r *rangeReader) Read(p []byte) (int, error) {
	for {
		if r.pos >= r.end {
			return 0, io.EOF
		}
		if len(p) == 0 {
			return 0, nil
		}
		if r.body == nil {
			if err := r.open(); err != nil {
				return 0, err
			}
		}
		n, err := r.body.Read(p[:min(int64(len(p)), r.bodyEnd-r.pos)])
		r.pos += int64(n)
		if r.pos >= r.bodyEnd {
			r.closeBody()
			r.retries = 0
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err == nil {
			return n, nil
		}
		r.closeBody()
		if r.ctx.Err() != nil {
			return n, r.ctx.Err()
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the response promised more
		}
		if r.retries++; r.retries > maxRangeRetries {
			return n, fmt.Errorf("%w: read from %d: %w", azstore.ErrTransient, r.pos, err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (r *rangeReader) closeBody() {
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
}

// Close ends the body being read, if any.
func (r *rangeReader) Close() error {
	r.closeBody()
	return nil
}
