package parse

import (
	"encoding/json"
	"time"
)

// TimeLayout formats a record time as Key Vault logs it: UTC with seven
// fractional digits (100 ns ticks), e.g. "2024-04-03T14:03:10.7886260Z".
const TimeLayout = "2006-01-02T15:04:05.0000000Z"

// Record is one Key Vault AuditEvent record, normalized. Strings are empty
// when the field is absent, null or not a JSON string. Raw fields hold the
// JSON as logged (valid JSON, possibly with whitespace between tokens).
type Record struct {
	// Time is the record's own time, in UTC, 100 ns precision kept.
	Time time.Time

	// Vault is the lower-cased vault name: the segment after VAULTS in
	// resourceId (its last segment if it has none, as for a managed HSM),
	// or the VAULTS/<NAME> segment of the blob path when resourceId is
	// missing or empty; then SubscriptionID and ResourceGroup come from
	// the blob path too.
	Vault          string
	SubscriptionID string // as logged (masked ids are not GUIDs)
	ResourceGroup  string
	ResourceID     string

	OperationName     string
	OperationVersion  string
	Category          string
	ResultType        string
	ResultSignature   string
	ResultDescription string

	// DurationMs is durationMs as a number; HasDuration is false when the
	// field is absent, null or not a number.
	DurationMs  float64
	HasDuration bool

	CallerIPAddress string
	CorrelationID   string

	Identity Identity

	// HTTPStatusCode is properties.httpStatusCode, 0 when absent.
	HTTPStatusCode int
	// Status is the outcome: HTTPStatusCode when logged, else derived from
	// ResultSignature ("Forbidden" → 403, "Not Found" → 404, "OK" → 200 …),
	// 0 when neither tells. resultType is never used: it says "Success" on 403.
	Status int

	RequestURI string
	ID         string // properties.id
	// ObjectName is the secret, key or certificate name, from ID or RequestURI;
	// ObjectType is "secret", "key", "certificate" or "" accordingly.
	ObjectName string
	ObjectType string
	ClientInfo string
	TLSVersion string

	// Properties is the properties object as logged (nil when absent or
	// null; a value of another type is kept as it is).
	Properties json.RawMessage
	// Extra holds unknown top-level fields as one JSON object (nil when none).
	Extra json.RawMessage

	// Blob is the identity of the blob the record was read from
	// (Options.Blob): its path, prefixed with "@<account>/" in a logs
	// account other than the first (see BlobID).
	Blob string
	// Account is the logs account of the blob: the one Blob names, else
	// Options.Account (Decoder.Account), the first logs account's name.
	Account string
	// Offset is the byte offset of the record's first byte (its '{') in its blob.
	Offset int64
}

// Identity is the caller identity, from identity.claim.
type Identity struct {
	ObjectID string // oid or http://schemas.microsoft.com/identity/claims/objectidentifier
	UPN      string // upn, unique_name, or http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn
	AppID    string // appid
	// Claims is the identity as logged: the claim object (identity.claim,
	// whatever its type), or else the identity value itself, e.g. the JSON
	// string when identity is a plain string; nil when absent or null.
	Claims json.RawMessage
}
