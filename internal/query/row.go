package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// ErrOldLayout is returned when the index holds rows of an older layout
// than this code reads (index.Layout): `handler backfill` rebuilds them.
// Nothing is answered from such rows, so nothing is silently half-read.
var ErrOldLayout = errors.New(index.OldLayoutNotice)

// row is one event as a query sees it: the stored columns of a layout-2
// Events row (index.Prop* names), and the fields stats, filters and
// detections use, filled from those columns, from the record the row
// holds (full) or from a posting entry (fromEntry).
type row struct {
	PartitionKey string    `json:"PartitionKey"`
	RowKey       string    `json:"RowKey"`
	V            *int      `json:"V"`
	O            string    `json:"O"`
	S            int       `json:"S"`
	L            string    `json:"L"`
	D            *edmFloat `json:"D"`
	R            []byte    `json:"R"`
	R1, R2, R3   []byte
	R4, R5, R6   []byte
	R7, R8, R9   []byte
	R10, R11     []byte
	R12, R13     []byte
	R14, R15     []byte
	Truncated    string `json:"Truncated"`

	Vault           string    `json:"-"`
	OperationName   string    `json:"-"`
	Status          int       `json:"-"`
	CallerIPAddress string    `json:"-"`
	ObjectName      string    `json:"-"`
	ClientInfo      string    `json:"-"`
	TLSVersion      string    `json:"-"`
	DurationMs      *edmFloat `json:"-"`
	caller          string
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

// decodeRow reads an Events row's columns; a row without V is of layout 1
// (ErrOldLayout).
func decodeRow(entity []byte, r *row) error {
	*r = row{}
	if err := json.Unmarshal(entity, r); err != nil {
		return fmt.Errorf("query: unreadable index row: %w", err)
	}
	if r.V == nil || *r.V != index.Layout {
		return ErrOldLayout
	}
	r.OperationName, r.Status, r.TLSVersion, r.DurationMs = r.O, r.S, r.L, r.D
	return nil
}

// recordBytes is R with its continuations.
func (r *row) recordBytes() []byte {
	return index.JoinParts(r.R, r.R1, r.R2, r.R3, r.R4, r.R5, r.R6, r.R7, r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15)
}

// record fills rec with the record r holds (its R column): the record as
// logged, normalized by d as `handler parse` does, so that the answer is
// what parse prints for it. rec's raw fields are valid until d's next use.
// Values ingest had to cut (listed in Truncated) are JSON strings ending
// with index.TruncatedMarker.
func (r *row) record(d *parse.Decoder, rec *parse.Record) error {
	raw, blob, err := index.DecodeRecord(r.recordBytes())
	if err != nil {
		return fmt.Errorf("query: row %s/%s: %w", r.PartitionKey, r.RowKey, err)
	}
	off, ok := index.RowKeyOffset(r.RowKey)
	if !ok {
		return fmt.Errorf("query: row %s/%s: not an event RowKey", r.PartitionKey, r.RowKey)
	}
	if err := d.Decode(raw, blob, off, rec); err != nil {
		return fmt.Errorf("query: row %s/%s: %w", r.PartitionKey, r.RowKey, err)
	}
	return nil
}

// full fills r's fields from the record it holds.
func (r *row) full(d *parse.Decoder) error {
	var rec parse.Record
	if err := r.record(d, &rec); err != nil {
		return err
	}
	r.Vault, r.CallerIPAddress, r.ObjectName, r.ClientInfo = rec.Vault, rec.CallerIPAddress, rec.ObjectName, rec.ClientInfo
	r.TLSVersion = rec.TLSVersion // L holds only the versions the old-TLS filter asks for
	r.caller = index.CallerKey(&rec)
	return nil
}

// fromEntry fills r from a posting entry of lineage e.Source.
func (r *row) fromEntry(e *index.Entry) {
	*r = row{
		RowKey: e.EventRowKey(), Vault: e.Vault, OperationName: e.Op, Status: e.Status,
		CallerIPAddress: e.IP, ObjectName: e.Object, ClientInfo: e.Client, caller: e.Caller,
	}
}

// callerKey is the caller the counts use for r: objectId, else upn, else
// appId, lower-cased, else "-" (index.CallerKey).
func (r *row) callerKey() string { return r.caller }

// DecodeRow fills rec from one layout-2 Events row, as Table Storage
// returns it or as index.Encoder writes it: the record `handler parse`
// prints, except for values ingest had to cut (those end with
// index.TruncatedMarker, raw JSON as a JSON string). A row of layout 1 is
// ErrOldLayout. rec's fields do not share memory with entity.
func DecodeRow(entity []byte, rec *parse.Record) error {
	var r row
	if err := decodeRow(entity, &r); err != nil {
		return err
	}
	var d parse.Decoder
	return r.record(&d, rec)
}

// selectColumns is a $select list.
func selectColumns(cols ...string) string { return strings.Join(cols, ",") }
