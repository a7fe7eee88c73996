package query

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// row is an index row as Table Storage returns it (index.Prop* names).
// Absent properties stay zero: ingest omits empty strings.
type row struct {
	PartitionKey      string    `json:"PartitionKey"`
	RowKey            string    `json:"RowKey"`
	Time              string    `json:"Time"`
	Vault             string    `json:"Vault"`
	SubscriptionID    string    `json:"SubscriptionId"`
	ResourceGroup     string    `json:"ResourceGroup"`
	ResourceID        string    `json:"ResourceId"`
	OperationName     string    `json:"OperationName"`
	OperationVersion  string    `json:"OperationVersion"`
	Category          string    `json:"Category"`
	ResultType        string    `json:"ResultType"`
	ResultSignature   string    `json:"ResultSignature"`
	ResultDescription string    `json:"ResultDescription"`
	DurationMs        *edmFloat `json:"DurationMs"`
	CallerIPAddress   string    `json:"CallerIpAddress"`
	CorrelationID     string    `json:"CorrelationId"`
	ObjectID          string    `json:"ObjectId"`
	UPN               string    `json:"Upn"`
	AppID             string    `json:"AppId"`
	Claims            string    `json:"Claims"`
	HTTPStatusCode    int       `json:"HttpStatusCode"`
	Status            int       `json:"Status"`
	RequestURI        string    `json:"RequestUri"`
	ID                string    `json:"Id"`
	ObjectName        string    `json:"ObjectName"`
	ObjectType        string    `json:"ObjectType"`
	ClientInfo        string    `json:"ClientInfo"`
	TLSVersion        string    `json:"TlsVersion"`
	Properties        string    `json:"Properties"`
	Extra             string    `json:"Extra"`
	Blob              string    `json:"Blob"`
	Offset            edmInt64  `json:"Offset"`
	Truncated         string    `json:"Truncated"`
}

// edmFloat is an Edm.Double as the service writes it: a JSON number, or a
// string for NaN and the infinities.
type edmFloat float64

func (f *edmFloat) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		switch s {
		case "NaN":
			*f = edmFloat(math.NaN())
		case "Infinity", "INF":
			*f = edmFloat(math.Inf(1))
		case "-Infinity", "-INF":
			*f = edmFloat(math.Inf(-1))
		default:
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return fmt.Errorf("query: Edm.Double %q: %w", s, err)
			}
			*f = edmFloat(v)
		}
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = edmFloat(v)
	return nil
}

// edmInt64 is an Edm.Int64: a string in JSON (so that no precision is
// lost), or a plain number from a writer that did not annotate it.
type edmInt64 int64

func (n *edmInt64) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("query: Edm.Int64 %q: %w", s, err)
		}
		*n = edmInt64(v)
		return nil
	}
	var v int64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*n = edmInt64(v)
	return nil
}

func decodeRow(entity []byte, r *row) error {
	*r = row{}
	if err := json.Unmarshal(entity, r); err != nil {
		return fmt.Errorf("query: unreadable index row: %w", err)
	}
	return nil
}

// time is the row's record time: its Time property, else the time its
// RowKey encodes.
func (r *row) time() time.Time {
	if t, err := time.Parse(time.RFC3339Nano, r.Time); err == nil {
		return t.UTC()
	}
	t, _ := index.RowKeyTime(r.RowKey)
	return t
}

// callerKey is the caller the counts use for r: objectId, else upn, else
// appId, lower-cased, else "-" (index.CallerKey).
func (r *row) callerKey() string {
	switch {
	case r.ObjectID != "":
		return strings.ToLower(r.ObjectID)
	case r.UPN != "":
		return strings.ToLower(r.UPN)
	case r.AppID != "":
		return strings.ToLower(r.AppID)
	}
	return "-"
}

// record fills rec from r. Raw JSON properties that ingest had to cut
// (listed in Truncated) are no longer valid JSON; they are given as JSON
// strings holding the cut text, marker included, so that nothing is lost
// and the output stays valid JSON.
func (r *row) record(rec *parse.Record) {
	*rec = parse.Record{
		Time:              r.time(),
		Vault:             r.Vault,
		SubscriptionID:    r.SubscriptionID,
		ResourceGroup:     r.ResourceGroup,
		ResourceID:        r.ResourceID,
		OperationName:     r.OperationName,
		OperationVersion:  r.OperationVersion,
		Category:          r.Category,
		ResultType:        r.ResultType,
		ResultSignature:   r.ResultSignature,
		ResultDescription: r.ResultDescription,
		CallerIPAddress:   r.CallerIPAddress,
		CorrelationID:     r.CorrelationID,
		Identity: parse.Identity{
			ObjectID: r.ObjectID,
			UPN:      r.UPN,
			AppID:    r.AppID,
			Claims:   r.raw(index.PropClaims, r.Claims),
		},
		HTTPStatusCode: r.HTTPStatusCode,
		Status:         r.Status,
		RequestURI:     r.RequestURI,
		ID:             r.ID,
		ObjectName:     r.ObjectName,
		ObjectType:     r.ObjectType,
		ClientInfo:     r.ClientInfo,
		TLSVersion:     r.TLSVersion,
		Properties:     r.raw(index.PropProperties, r.Properties),
		Extra:          r.raw(index.PropExtra, r.Extra),
		Blob:           r.Blob,
		Offset:         int64(r.Offset),
	}
	if r.DurationMs != nil {
		rec.DurationMs, rec.HasDuration = float64(*r.DurationMs), true
	}
}

func (r *row) raw(name, v string) json.RawMessage {
	if v == "" {
		return nil
	}
	if r.wasTruncated(name) {
		b, _ := json.Marshal(v) // a string: cannot fail
		return b
	}
	return json.RawMessage(v)
}

func (r *row) wasTruncated(name string) bool {
	if r.Truncated == "" {
		return false
	}
	for _, n := range strings.Split(r.Truncated, ",") {
		if n == name {
			return true
		}
	}
	return false
}

// DecodeRow fills rec from one index row (an Events or lookup row, as
// Table Storage returns it, or as index.Encoder writes it). The record is
// the one ingest indexed, except for values ingest had to cut: those end
// with index.TruncatedMarker, and cut raw JSON comes back as a JSON string.
// rec's fields do not share memory with entity.
func DecodeRow(entity []byte, rec *parse.Record) error {
	var r row
	if err := decodeRow(entity, &r); err != nil {
		return err
	}
	if r.Time == "" && r.RowKey == "" {
		return fmt.Errorf("query: not an index row: no Time and no RowKey")
	}
	r.record(rec)
	return nil
}

// selectColumns is a $select list.
func selectColumns(cols ...string) string { return strings.Join(cols, ",") }
