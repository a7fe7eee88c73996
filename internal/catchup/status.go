package catchup

import (
	"context"
	"time"

	"github.com/kvaudit/kvaudit/internal/ingest"
)

// BlobStatus is how far one blob is indexed.
type BlobStatus struct {
	Blob       string    `json:"blob"`
	Hour       time.Time `json:"hour"`
	Length     int64     `json:"length"`
	Offset     int64     `json:"offset"`
	Lag        int64     `json:"lag"` // bytes not yet indexed (a cut last record counts)
	Records    int64     `json:"records"`
	BadRecords int64     `json:"badRecords"`
	TooOld     int64     `json:"tooOld"` // records older than retention, not indexed
	Tries      int       `json:"tries"`
	Parked     bool      `json:"parked"`
	LastError  string    `json:"lastError,omitempty"`
	UpdatedAt  time.Time `json:"updatedAt,omitzero"`
}

// Status lists the blobs of the recent hours of every known vault, and
// the blobs of any hour with work left, with their checkpoints; a blob
// never indexed shows offset 0. It reads, never writes.
func (r *Runner) Status(ctx context.Context) ([]BlobStatus, error) {
	_, blobs, err := r.recentBlobs(ctx, false)
	if err != nil {
		return nil, err
	}
	_, more, err := r.unfinishedBlobs(ctx, blobs, false)
	if err != nil {
		return nil, err
	}
	blobs = append(blobs, more...)
	maxTries := orDefault(r.MaxTries, 5)
	out := make([]BlobStatus, 0, len(blobs))
	for _, b := range blobs {
		cp, err := ingest.ReadCheckpoint(ctx, r.Tables, b.Name)
		if err != nil {
			return nil, err
		}
		st := BlobStatus{Blob: b.Name, Hour: b.Hour, Length: b.Length}
		if cp.Exists() && cp.CreatedOn.Equal(b.CreatedOn) {
			st.Offset, st.Records, st.BadRecords, st.TooOld = cp.Offset, cp.Records, cp.BadRecords, cp.TooOld
			st.UpdatedAt = cp.UpdatedAt
		}
		if cp.Exists() {
			st.Tries, st.LastError = cp.Tries, cp.LastError
			st.Parked = cp.Tries >= maxTries && cp.BlobETag == b.ETag
		}
		st.Lag = max(st.Length-st.Offset, 0)
		out = append(out, st)
	}
	return out, nil
}
