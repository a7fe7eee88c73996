package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Logs accounts (issue 17). Azure Monitor writes a vault's resource logs
// only to a storage account in the vault's own region, so an organization
// with vaults in several regions has a logs account per region. The first
// is AuditLogsStorage (the blob trigger's connection, as before); the
// others are listed by AuditLogsAccounts:
//
//	AuditLogsRegion=westeurope
//	AuditLogsAccounts=stkvlogsneu:northeurope,stkvlogseus:eastus
//	AuditLogsStorage_stkvlogsneu__blobServiceUri=https://stkvlogsneu.blob.core.windows.net
//	AuditLogsStorage_stkvlogsneu__credential=managedidentity
//	AuditLogsStorage_stkvlogsneu__clientId=…
//	AuditLogsStorage_stkvlogseus=<a connection string>
//
// Each entry names an account by its storage account name, which is also
// how kvaudit tells its blobs from another account's (see parse.BlobID):
// that name must be the account's own, and never change.

// logsAccountPrefix starts the settings of a listed logs account.
const logsAccountPrefix = SettingLogsStorage + "_"

// LogsAccountSetting is the setting (connection string, or prefix of the
// identity-based <NAME>__… settings) of the listed logs account name.
func LogsAccountSetting(name string) string { return logsAccountPrefix + name }

// LogsAccount is one storage account Key Vault writes audit logs to.
type LogsAccount struct {
	// Name is the account's short stable name: its storage account name.
	// It qualifies the identity of every blob of the account but the
	// first's, so it must not change once blobs are indexed.
	Name string
	// Region is the account's Azure region as configured ("" unknown).
	// Azure Monitor writes a vault's logs to an account in its region, so
	// this is the region of the account's vaults too.
	Region string
	// First is true for AuditLogsStorage: its blobs keep the identity
	// they had before kvaudit read several accounts (their bare path), so
	// an index written then stays valid as it is.
	First bool
	// Account is where the account is and how to reach it.
	Account Account
}

// String is the account's name, region and endpoint, never a secret.
func (l LogsAccount) String() string {
	return fmt.Sprintf("%s (%s) %s", l.Name, orUnknown(l.Region), l.Account.BlobURL)
}

func orUnknown(s string) string {
	if s == "" {
		return "region unknown"
	}
	return s
}

// LogsAccount returns the logs account named name.
func (s *Settings) LogsAccount(name string) (LogsAccount, bool) {
	for _, l := range s.LogsAccounts {
		if l.Name == name {
			return l, true
		}
	}
	return LogsAccount{}, false
}

// FirstLogsAccount is the AuditLogsStorage account.
func (s *Settings) FirstLogsAccount() LogsAccount {
	for _, l := range s.LogsAccounts {
		if l.First {
			return l
		}
	}
	return LogsAccount{First: true, Account: s.Logs, Name: AccountNameOf(s.Logs)}
}

// BlobOf reads a blob URL (as an Event Grid BlobCreated event carries it)
// against the logs accounts: ok is true only when the URL is under the
// blob endpoint of one of them (same scheme, host and, for path-style
// endpoints such as Azurite's, account segment) and in container. path is
// the blob's name inside the container, unescaped. Nothing else is
// trusted: a URL anyone could have put in an event never leads kvaudit
// to an account the settings do not list.
func (s *Settings) BlobOf(rawURL, container string) (acct LogsAccount, path string, ok bool) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || u.User != nil {
		return LogsAccount{}, "", false
	}
	for _, l := range s.LogsAccounts {
		base, err := url.Parse(l.Account.BlobURL)
		if err != nil {
			continue
		}
		if !strings.EqualFold(u.Scheme, base.Scheme) || !strings.EqualFold(u.Host, base.Host) {
			continue
		}
		rest, found := strings.CutPrefix(u.EscapedPath(), strings.TrimSuffix(base.EscapedPath(), "/")+"/")
		if !found {
			continue
		}
		c, name, found := strings.Cut(rest, "/")
		if !found || c != url.PathEscape(container) || name == "" {
			continue
		}
		p, err := url.PathUnescape(name)
		if err != nil {
			return LogsAccount{}, "", false
		}
		return l, p, true
	}
	return LogsAccount{}, "", false
}

// AccountNameOf is the storage account name an account's settings give:
// the connection string's AccountName, else the first label of a
// <name>.blob.<suffix> endpoint (or <name>.<zone>.blob…, as private link
// and Azure DNS zone endpoints are named), else the first path segment of a
// path-style endpoint (Azurite's http://127.0.0.1:10000/<name>), else the
// endpoint's host.
func AccountNameOf(a Account) string {
	if a.Name != "" {
		return strings.ToLower(a.Name)
	}
	for _, raw := range []string{a.BlobURL, a.TableURL, a.QueueURL} {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			continue
		}
		host := strings.ToLower(u.Hostname())
		if labels := strings.Split(host, "."); len(labels) > 2 && net.ParseIP(host) == nil {
			// <name>.blob.core.windows.net, <name>.privatelink.blob…,
			// <name>.z01.blob.storage.azure.net (Azure DNS zone endpoints).
			for _, l := range labels[1:min(3, len(labels)-1)] {
				switch l {
				case "blob", "table", "queue", "dfs":
					return labels[0]
				}
			}
		}
		if seg, _, _ := strings.Cut(strings.Trim(u.Path, "/"), "/"); seg != "" {
			return strings.ToLower(seg)
		}
		return host
	}
	return ""
}

// validAccountName: what Azure allows a storage account to be named, 3 to
// 24 lower-case letters and digits.
func validAccountName(n string) bool {
	if len(n) < 3 || len(n) > 24 {
		return false
	}
	for _, c := range n {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// validRegion: an Azure region's programmatic name (westeurope, eastus2).
func validRegion(r string) bool {
	if r == "" || len(r) > 40 {
		return false
	}
	for _, c := range r {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// normalizeRegion turns "West Europe" into "westeurope".
func normalizeRegion(r string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(r), " ", ""))
}

type listEntry struct{ name, region string }

// parseLogsAccountList reads AuditLogsAccounts: entries separated by
// commas, semicolons or white space, each "name" or "name:region".
func parseLogsAccountList(v string) ([]listEntry, error) {
	var out []listEntry
	var errs []error
	seen := map[string]bool{}
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' }) {
		name, region, _ := strings.Cut(f, ":")
		name, region = strings.ToLower(strings.TrimSpace(name)), normalizeRegion(region)
		switch {
		case !validAccountName(name):
			errs = append(errs, fmt.Errorf("%s: %q is not a storage account name (3 to 24 lower-case letters and digits)", SettingLogsAccounts, name))
		case region != "" && !validRegion(region):
			errs = append(errs, fmt.Errorf("%s: %q: region %q is not a region name (letters and digits, as westeurope)", SettingLogsAccounts, f, region))
		case seen[name]:
			errs = append(errs, fmt.Errorf("%s: %q is listed twice", SettingLogsAccounts, name))
		default:
			seen[name] = true
			out = append(out, listEntry{name, region})
		}
	}
	return out, errors.Join(errs...)
}

// readLogsAccounts resolves every logs account: first (AuditLogsStorage,
// already read) and those AuditLogsAccounts lists. The errors name each
// setting at fault.
func readLogsAccounts(first Account, get func(string) string) ([]LogsAccount, []error) {
	var errs []error
	region := normalizeRegion(get(SettingLogsRegion))
	if region != "" && !validRegion(region) {
		errs = append(errs, fmt.Errorf("%s=%q: want a region name (letters and digits, as westeurope)", SettingLogsRegion, region))
		region = ""
	}
	accounts := []LogsAccount{{Name: AccountNameOf(first), Region: region, First: true, Account: first}}
	entries, err := parseLogsAccountList(get(SettingLogsAccounts))
	if err != nil {
		errs = append(errs, err)
	}
	for _, e := range entries {
		setting := LogsAccountSetting(e.name)
		if e.name == accounts[0].Name {
			errs = append(errs, fmt.Errorf("%s: %q is the account of %s already", SettingLogsAccounts, e.name, SettingLogsStorage))
			continue
		}
		if !hasAccount(setting, get) {
			errs = append(errs, fmt.Errorf("%s lists %q but %s is not set: give a connection string, or %s__blobServiceUri (with __credential/__clientId) for identity-based access", SettingLogsAccounts, e.name, setting, setting))
			continue
		}
		a, err := readAccount(setting, get)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if a.BlobURL == "" {
			errs = append(errs, fmt.Errorf("%s: no blob endpoint: set BlobEndpoint in the connection string, or %s__blobServiceUri", setting, setting))
			continue
		}
		// The name is the blobs' identity: an endpoint of another account
		// would file that account's blobs under this name.
		if got := AccountNameOf(a); got != e.name {
			errs = append(errs, fmt.Errorf("%s names account %q, but %s lists it as %q: the name must be the account's own", setting, got, SettingLogsAccounts, e.name))
			continue
		}
		accounts = append(accounts, LogsAccount{Name: e.name, Region: e.region, Account: a})
	}
	return accounts, errs
}

// IsName reports whether name is a setting kvaudit reads: one of [Names],
// or a setting of a listed logs account (AuditLogsStorage_<name> alone or
// with a suffix of [AccountSuffixes]).
func IsName(name string) bool {
	for _, n := range Names() {
		if n == name {
			return true
		}
	}
	rest, ok := strings.CutPrefix(name, logsAccountPrefix)
	if !ok || strings.HasPrefix(rest, "_") { // AuditLogsStorage__…: in Names
		return false
	}
	acct, suffix, hasSuffix := strings.Cut(rest, "__")
	if !validAccountName(acct) {
		return false
	}
	if !hasSuffix {
		return true
	}
	for _, s := range AccountSuffixes {
		if s == "__"+suffix {
			return true
		}
	}
	return false
}
