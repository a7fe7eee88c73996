package parse

import (
	"strings"
	"time"
)

// BlobPath is what an Azure Monitor blob name tells about its records.
type BlobPath struct {
	SubscriptionID string    // as in the path (upper case, as Azure Monitor writes it)
	ResourceGroup  string    // as in the path
	Vault          string    // lower-cased
	Hour           time.Time // the hour the blob was opened for, UTC; zero if the path has no y/m/d/h
}

// A blob's identity (issue 17): kvaudit reads several logs accounts, one
// per region, and the same path can exist in two of them (a vault whose
// diagnostic setting moved to another account). Every key derived from a
// blob (checkpoint, lineage, row keys, registry, the list of blobs with
// work left) derives from its identity, so that two accounts never
// collide. A blob of the first logs account (AuditLogsStorage) is
// identified by its bare path, as before, so that an index written by an
// earlier kvaudit stays valid; a blob of any other account by
// "@<account>/<path>". Storage account names are 3 to 24 lower-case
// letters and digits, so "@name/" never spells the start of another
// account's identity, and a bare path starting with "@" is refused
// (BlobID): Azure Monitor never writes one.

// BlobID is the identity of the blob at path in logs account account ("":
// the first logs account). ok is false for a path kvaudit cannot identify
// (empty, or starting with "@" in the first account) or an account name
// that is not a storage account's.
func BlobID(account, path string) (id string, ok bool) {
	switch {
	case path == "":
		return "", false
	case account == "":
		return path, path[0] != '@'
	case !accountName(account):
		return "", false
	}
	return "@" + account + "/" + path, true
}

// SplitBlobID is BlobID's inverse: the account named by id ("" for the
// first logs account) and the blob's path in its container.
func SplitBlobID(id string) (account, path string) {
	if len(id) == 0 || id[0] != '@' {
		return "", id
	}
	a, p, ok := strings.Cut(id[1:], "/")
	if !ok || !accountName(a) {
		return "", id
	}
	return a, p
}

// accountName: 3 to 24 lower-case letters and digits, as Azure names
// storage accounts.
func accountName(a string) bool {
	if len(a) < 3 || len(a) > 24 {
		return false
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; (c < 'a' || c > 'z') && !isDigit(c) {
			return false
		}
	}
	return true
}

// auditContainer is the container Azure Monitor writes Key Vault audit logs to.
const auditContainer = "insights-logs-auditevent/"

// ParseBlobPath reads an Azure Monitor blob name, or a blob's identity
// (BlobID), whose account part it ignores:
//
//	[@<account>/][insights-logs-auditevent/]resourceId=/SUBSCRIPTIONS/<sub>/RESOURCEGROUPS/<rg>/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/<NAME>/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json
//
// The fixed segment names match case-insensitively. The date part may be
// missing (Hour is then zero), or be followed by the minute segment and a
// file name; ok is false for any other shape, or a date that does not exist.
func ParseBlobPath(name string) (BlobPath, bool) {
	_, name = SplitBlobID(name)
	s := strings.TrimPrefix(name, auditContainer)
	const prefix = "resourceid=/"
	if len(s) < len(prefix) || !equalFold(s[:len(prefix)], prefix) {
		return BlobPath{}, false
	}
	segs := strings.Split(s[len(prefix):], "/")
	fixed := [...]string{"subscriptions", "", "resourcegroups", "", "providers", "microsoft.keyvault", "vaults", ""}
	if len(segs) < len(fixed) {
		return BlobPath{}, false
	}
	for i, want := range fixed {
		if want == "" && segs[i] == "" || want != "" && !equalFold(segs[i], want) {
			return BlobPath{}, false
		}
	}
	bp := BlobPath{SubscriptionID: segs[1], ResourceGroup: segs[3], Vault: strings.ToLower(segs[7])}
	rest := segs[len(fixed):]
	if len(rest) == 0 {
		return bp, true
	}
	if len(rest) < 4 {
		return BlobPath{}, false
	}
	year, ok1 := pathNumber(rest[0], "y=", 4, 0, 9999)
	month, ok2 := pathNumber(rest[1], "m=", 2, 1, 12)
	day, ok3 := pathNumber(rest[2], "d=", 2, 1, 31)
	hour, ok4 := pathNumber(rest[3], "h=", 2, 0, 23)
	if !ok1 || !ok2 || !ok3 || !ok4 || day > daysIn(time.Month(month), year) {
		return BlobPath{}, false
	}
	rest = rest[4:]
	if len(rest) > 0 {
		if _, ok := pathNumber(rest[0], "m=", 2, 0, 59); ok {
			rest = rest[1:]
		}
	}
	switch {
	case len(rest) > 1, len(rest) == 1 && rest[0] == "":
		return BlobPath{}, false
	}
	bp.Hour = time.Date(year, time.Month(month), day, hour, 0, 0, 0, time.UTC)
	return bp, true
}

// pathNumber reads a segment such as "y=2024": key, then exactly digits
// digits, within [lo, hi].
func pathNumber(seg, key string, digits, lo, hi int) (int, bool) {
	if len(seg) != len(key)+digits || !strings.HasPrefix(seg, key) {
		return 0, false
	}
	v := 0
	for i := len(key); i < len(seg); i++ {
		if !isDigit(seg[i]) {
			return 0, false
		}
		v = v*10 + int(seg[i]-'0')
	}
	return v, lo <= v && v <= hi
}
