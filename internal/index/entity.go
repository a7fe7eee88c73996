package index

import (
	"unicode/utf16"
	"unicode/utf8"

	"github.com/kvaudit/kvaudit/internal/parse"
)

// Property names of an event row. Lookup rows carry the same properties, so
// a lookup answers a query without a second read.
const (
	PropTime              = "Time"
	PropVault             = "Vault"
	PropSubscriptionID    = "SubscriptionId"
	PropResourceGroup     = "ResourceGroup"
	PropResourceID        = "ResourceId"
	PropOperationName     = "OperationName"
	PropOperationVersion  = "OperationVersion"
	PropCategory          = "Category"
	PropResultType        = "ResultType"
	PropResultSignature   = "ResultSignature"
	PropResultDescription = "ResultDescription"
	PropDurationMs        = "DurationMs"
	PropCallerIPAddress   = "CallerIpAddress"
	PropCorrelationID     = "CorrelationId"
	PropObjectID          = "ObjectId"
	PropUPN               = "Upn"
	PropAppID             = "AppId"
	PropClaims            = "Claims"
	PropHTTPStatusCode    = "HttpStatusCode"
	PropStatus            = "Status"
	PropRequestURI        = "RequestUri"
	PropID                = "Id"
	PropObjectName        = "ObjectName"
	PropObjectType        = "ObjectType"
	PropClientInfo        = "ClientInfo"
	PropTLSVersion        = "TlsVersion"
	PropProperties        = "Properties"
	PropExtra             = "Extra"
	PropBlob              = "Blob"
	PropOffset            = "Offset"
	// PropTruncated lists, comma-separated, the properties cut to fit Table
	// Storage's limits; a reader must not parse those as JSON.
	PropTruncated = "Truncated"
)

// Table Storage limits. A string property holds at most 64 KiB, which
// Azurite counts as 32 K UTF-16 code units; an entity holds at most 1 MiB by
// the service's size formula. We stay under both with room to spare.
const (
	maxStringUnits = 32000
	maxEntityBytes = 960 * 1024
	// TruncatedMarker ends a value that was cut to fit.
	TruncatedMarker = "…[truncated by kvaudit]"
)

var markerUnits = utf16Len(TruncatedMarker)

// Entity is one table row, ready for a transaction.
type Entity struct {
	Table string // short table name (TableEvents …), without the prefix
	PK    string
	RK    string
	Body  []byte // the JSON entity, keys included
}

// strProp is a string value and its UTF-16 length, as Table Storage
// counts it.
type strProp struct {
	value string
	units int
}

// Encoder turns records into rows: an Events row per record, written as
// it is read, and the posting rows of a chunk of records, written before
// the chunk's checkpoint. An Encoder is not safe for concurrent use; the
// Entity bodies it returns are fresh and safe to keep.
type Encoder struct {
	post Postings
}

// Rows appends to dst rec's Events row (layout 2: filter columns and the
// record compressed, see README's Tables) and adds rec to the chunk's
// postings under each of its lookup keys. A record too large for Table
// Storage is cut (the values named in Truncated end with
// TruncatedMarker); the record is always indexed.
//
// raw is the record's JSON as logged (parse.Reader.Raw), which the row
// stores.
func (e *Encoder) Rows(dst []Entity, rec *parse.Record, raw []byte, sourceID string) []Entity {
	dst = append(dst, eventRow(rec, raw, Partition(rec.Vault, rec.Time), RowKey(rec.Time, sourceID, rec.Offset)))
	e.post.Add(rec, sourceID)
	return dst
}

// Postings appends the posting rows of the records given to Rows since the
// last call, for the chunk that starts at blob offset chunkStart.
func (e *Encoder) Postings(dst []Entity, chunkStart int64) []Entity {
	return e.post.Rows(dst, chunkStart)
}

// truncate keeps at most keep UTF-16 units of p's value, marker included,
// without splitting a character.
func truncate(p strProp, keep int) strProp {
	limit := max(keep-markerUnits, 0)
	units, i := 0, 0
	for i < len(p.value) {
		r, size := utf8.DecodeRuneInString(p.value[i:])
		n := utf16.RuneLen(r)
		if n < 0 {
			n = 1
		}
		if units+n > limit {
			break
		}
		units += n
		i += size
	}
	p.value = p.value[:i] + TruncatedMarker
	p.units = units + markerUnits
	return p
}

func utf16Len(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			n++
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r > 0xFFFF {
			n += 2
		} else {
			n++
		}
		i += size
	}
	return n
}

// appendJSONString is parse's string encoder: rows and the API escape alike.
func appendJSONString(b []byte, s string) []byte { return parse.AppendString(b, s) }
