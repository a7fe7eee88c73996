package catchup

import (
	"context"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

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
	// LastError is the recorded text of the last failure, whole: SDK
	// detail included. The query API shows only its ShortError.
	LastError string    `json:"lastError,omitempty"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
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

// maxShortError bounds ShortError's answer: a reason, not a report.
const maxShortError = 300

// errorDetail are where the storage SDK's, the network's or a
// credential's own text begins in a recorded error: a URL (whose query
// may hold a SAS signature), an account key or signature written out, a
// network address, the SDK's response dump (RESPONSE 403 …, ERROR CODE …,
// the service's XML or JSON body).
var errorDetail = []string{"://", "sig=", "AccountKey=", "SharedAccessSignature=", "dial ", "read tcp", "write tcp",
	"lookup ", "RESPONSE ", "ERROR CODE", "RequestId:", "{", "<"}

var (
	errorStatusRE = regexp.MustCompile(`RESPONSE ([1-5][0-9][0-9])`)
	errorCodeRE   = regexp.MustCompile(`ERROR CODE: ([A-Za-z][A-Za-z0-9]{0,63})`)
)

// ShortError is what a caller of the query API is shown of a recorded
// error (BlobStatus.LastError): kvaudit's own words, never the SDK's or
// the network's. A recorded error is the text of an ingest failure, often
// wrapping the SDK's, whose text holds request URLs, the service's
// response and network addresses. ShortError keeps the first line up to
// the first such detail (see errorDetail) and the HTTP method before a
// URL, at most 300 bytes, and adds the storage's status and error code
// when the text carries them ("… (storage answered 404 BlobNotFound)").
// Where nothing is left it says where the detail is. The full text stays
// in the checkpoint and in the handler's log, and `handler status`, which
// only someone with the storage settings can run, prints it.
func ShortError(text string) string {
	if text == "" {
		return ""
	}
	s, _, _ := strings.Cut(text, "\n")
	for _, m := range errorDetail {
		i := strings.Index(s, m)
		if i < 0 {
			continue
		}
		if m == "://" || strings.HasSuffix(m, "=") {
			// Back to the start of the URL or the setting's name.
			i = strings.LastIndexAny(s[:i], " \"'(;") + 1
		}
		s = s[:i]
	}
	// What led to the detail: an opening quote, the request's method.
	s = strings.TrimRight(s, " ")
	if n := len(s); n > 0 && strings.IndexByte("\"'(", s[n-1]) >= 0 {
		s = strings.TrimRight(s[:n-1], " ")
	}
	for _, method := range []string{"GET", "Get", "PUT", "Put", "POST", "Post", "HEAD", "Head", "DELETE", "Delete", "PATCH", "Patch", "MERGE", "Merge"} {
		if s == method {
			s = ""
		} else if t, ok := strings.CutSuffix(s, " "+method); ok {
			s = t
		}
	}
	s = strings.TrimRight(s, " :")
	if len(s) > maxShortError {
		n := maxShortError
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	var answered []string
	if m := errorStatusRE.FindStringSubmatch(text); m != nil {
		answered = append(answered, m[1])
	}
	if m := errorCodeRE.FindStringSubmatch(text); m != nil {
		answered = append(answered, m[1])
	}
	switch {
	case s == "" && len(answered) == 0:
		return "failed; handler status and the handler's log show the error"
	case s == "":
		s = "failed"
	}
	if len(answered) > 0 {
		s += " (storage answered " + strings.Join(answered, " ") + ")"
	}
	return s
}
