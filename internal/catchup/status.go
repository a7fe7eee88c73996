package catchup

import (
	"context"
	"time"

	"github.com/kvaudit/kvaudit/internal/ingest"
)

// BlobStatus is how far one blob is indexed.
type BlobStatus struct {
	Blob string `json:"blob"` // the blob's path in its account's container
	// Account is the blob's logs account and Region its region, when known.
	Account    string    `json:"account,omitempty"`
	Region     string    `json:"region,omitempty"`
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

// AccountStatus sums the status of one logs account's blobs.
type AccountStatus struct {
	AccountReport
	Blobs    int   `json:"blobs"`    // blobs listed
	LagBytes int64 `json:"lagBytes"` // their bytes not yet indexed
	Failing  int   `json:"failing"`  // blobs whose last ingest failed (tries > 0)
	Parked   int   `json:"parked"`   // of those, parked until they change
}

// StatusReport is what Status found: per logs account, then per blob.
type StatusReport struct {
	Accounts []AccountStatus
	Blobs    []BlobStatus
}

// Status lists the blobs of the recent hours of every known vault of every
// logs account, and the blobs of any hour with work left, with their
// checkpoints; a blob never indexed shows offset 0. An account that cannot
// be listed says why in its AccountStatus. It reads, never writes.
func (r *Runner) Status(ctx context.Context) (*StatusReport, error) {
	all := r.accounts()
	_, blobs, accts, err := r.recentBlobs(ctx, false)
	if err != nil {
		return nil, err
	}
	_, more, err := r.unfinishedBlobs(ctx, blobs, false, failedAccounts(all, accts))
	if err != nil {
		return nil, err
	}
	blobs = append(blobs, more...)
	rep := &StatusReport{Accounts: make([]AccountStatus, len(accts))}
	byQ := map[string]*AccountStatus{}
	for i, a := range accts {
		rep.Accounts[i] = AccountStatus{AccountReport: a}
		byQ[all[i].qual] = &rep.Accounts[i]
	}
	maxTries := orDefault(r.MaxTries, 5)
	rep.Blobs = make([]BlobStatus, 0, len(blobs))
	for _, b := range blobs {
		cp, err := ingest.ReadCheckpoint(ctx, r.Tables, b.Name)
		if err != nil {
			return nil, err
		}
		qual, path := splitID(b.Name)
		st := BlobStatus{Blob: path, Hour: b.Hour, Length: b.Length}
		as := byQ[qual]
		if as != nil {
			st.Account, st.Region = as.Account, as.Region
		}
		if cp.Exists() && cp.CreatedOn.Equal(b.CreatedOn) {
			st.Offset, st.Records, st.BadRecords, st.TooOld = cp.Offset, cp.Records, cp.BadRecords, cp.TooOld
			st.UpdatedAt = cp.UpdatedAt
		}
		if cp.Exists() {
			st.Tries, st.LastError = cp.Tries, cp.LastError
			st.Parked = cp.Tries >= maxTries && cp.BlobETag == b.ETag
		}
		st.Lag = max(st.Length-st.Offset, 0)
		if as != nil {
			as.Blobs++
			as.LagBytes += st.Lag
			if st.Tries > 0 {
				as.Failing++
			}
			if st.Parked {
				as.Parked++
			}
		}
		rep.Blobs = append(rep.Blobs, st)
	}
	return rep, nil
}
