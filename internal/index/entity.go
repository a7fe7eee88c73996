package index

import (
	"strconv"
	"strings"
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

type strProp struct {
	name  string
	value string
	units int  // UTF-16 length of value
	raw   bool // JSON text: not parseable once truncated
}

// Encoder turns records into rows. Its scratch space is reused between
// calls, so an Encoder is not safe for concurrent use; the Entity bodies it
// returns are fresh and safe to keep.
type Encoder struct {
	props []strProp
	buf   []byte
}

// Rows appends to dst the rows of rec: its events row, then one lookup row
// per distinct caller id (objectId, upn, appId), one for its caller IP and
// one for its object name. All share one RowKey. Oversized values are cut
// with [TruncatedMarker] and listed in [PropTruncated]; the record is always
// indexed.
func (e *Encoder) Rows(dst []Entity, rec *parse.Record, sourceID string) []Entity {
	rk := RowKey(rec.Time, sourceID, rec.Offset)
	body := e.properties(rec)

	row := func(table, pk string) {
		b := make([]byte, 0, len(body)+len(pk)+len(rk)+40)
		b = append(b, `{"PartitionKey":`...)
		b = appendJSONString(b, pk)
		b = append(b, `,"RowKey":`...)
		b = appendJSONString(b, rk)
		b = append(b, body...)
		b = append(b, '}')
		dst = append(dst, Entity{Table: table, PK: pk, RK: rk, Body: b})
	}
	row(TableEvents, Partition(rec.Vault, rec.Time))
	var seen [3]string
	for i, id := range [3]string{rec.Identity.ObjectID, rec.Identity.UPN, rec.Identity.AppID} {
		k := strings.ToLower(id)
		if k == "" || k == seen[0] || k == seen[1] {
			continue
		}
		seen[i] = k
		row(TableByCaller, Partition(k, rec.Time))
	}
	if rec.CallerIPAddress != "" {
		row(TableByIP, Partition(rec.CallerIPAddress, rec.Time))
	}
	if rec.ObjectName != "" {
		row(TableByObject, Partition(rec.ObjectName, rec.Time))
	}
	return dst
}

// properties encodes rec's properties (no keys) as `,"Name":value…`.
func (e *Encoder) properties(rec *parse.Record) []byte {
	e.props = e.props[:0]
	add := func(name, v string, raw bool) {
		if v != "" {
			e.props = append(e.props, strProp{name: name, value: v, units: utf16Len(v), raw: raw})
		}
	}
	add(PropTime, parse.FormatTime(rec.Time), false)
	add(PropVault, rec.Vault, false)
	add(PropSubscriptionID, rec.SubscriptionID, false)
	add(PropResourceGroup, rec.ResourceGroup, false)
	add(PropResourceID, rec.ResourceID, false)
	add(PropOperationName, rec.OperationName, false)
	add(PropOperationVersion, rec.OperationVersion, false)
	add(PropCategory, rec.Category, false)
	add(PropResultType, rec.ResultType, false)
	add(PropResultSignature, rec.ResultSignature, false)
	add(PropResultDescription, rec.ResultDescription, false)
	add(PropCallerIPAddress, rec.CallerIPAddress, false)
	add(PropCorrelationID, rec.CorrelationID, false)
	add(PropObjectID, rec.Identity.ObjectID, false)
	add(PropUPN, rec.Identity.UPN, false)
	add(PropAppID, rec.Identity.AppID, false)
	add(PropClaims, string(rec.Identity.Claims), true)
	add(PropRequestURI, rec.RequestURI, false)
	add(PropID, rec.ID, false)
	add(PropObjectName, rec.ObjectName, false)
	add(PropObjectType, rec.ObjectType, false)
	add(PropClientInfo, rec.ClientInfo, false)
	add(PropTLSVersion, rec.TLSVersion, false)
	add(PropProperties, string(rec.Properties), true)
	add(PropExtra, string(rec.Extra), true)
	add(PropBlob, rec.Blob, false)

	truncated := e.fit()

	b := e.buf[:0]
	for _, p := range e.props {
		b = append(b, ',', '"')
		b = append(b, p.name...)
		b = append(b, '"', ':')
		b = appendJSONString(b, p.value)
	}
	if rec.HasDuration {
		b = append(b, `,"DurationMs@odata.type":"Edm.Double","DurationMs":`...)
		b = strconv.AppendFloat(b, rec.DurationMs, 'g', -1, 64)
	}
	if rec.HTTPStatusCode != 0 {
		b = append(b, `,"HttpStatusCode":`...)
		b = strconv.AppendInt(b, int64(int32(rec.HTTPStatusCode)), 10)
	}
	b = append(b, `,"Status":`...)
	b = strconv.AppendInt(b, int64(int32(rec.Status)), 10)
	b = append(b, `,"Offset@odata.type":"Edm.Int64","Offset":"`...)
	b = strconv.AppendInt(b, rec.Offset, 10)
	b = append(b, '"')
	if truncated != "" {
		b = append(b, `,"Truncated":`...)
		b = appendJSONString(b, truncated)
	}
	e.buf = b
	return b
}

// fit cuts string properties to Table Storage's limits and returns the
// names of those it cut, comma-separated.
func (e *Encoder) fit() string {
	var cut []string
	mark := func(i int) {
		for _, n := range cut {
			if n == e.props[i].name {
				return
			}
		}
		cut = append(cut, e.props[i].name)
	}
	size := 0
	for i := range e.props {
		if e.props[i].units > maxStringUnits {
			e.props[i] = truncate(e.props[i], maxStringUnits)
			mark(i)
		}
		size += propSize(e.props[i])
	}
	// Lookup rows add up to ~2 KiB of keys; the budget leaves room for them.
	for size > maxEntityBytes {
		big := 0
		for i := range e.props {
			if e.props[i].units > e.props[big].units {
				big = i
			}
		}
		p := e.props[big]
		excess := (size - maxEntityBytes) / 2
		keep := max(p.units-excess-markerUnits-16, 0)
		size -= propSize(p)
		e.props[big] = truncate(p, keep)
		size += propSize(e.props[big])
		mark(big)
	}
	return strings.Join(cut, ",")
}

// propSize is the service's size formula for a string property:
// 8 bytes + 2 per name character + 4 + 2 per UTF-16 unit.
func propSize(p strProp) int { return 8 + 2*len(p.name) + 4 + 2*p.units }

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
