// Package config reads and validates every setting kvaudit uses, once, at
// start. App settings reach a Functions custom handler as environment
// variables; this package is the one place that lists them.
//
// A storage account setting is either a connection string (including
// "UseDevelopmentStorage=true", which the Go SDK rejects and which is expanded
// here to Azurite's well-known account) or identity-based, as Azure Functions
// defines it: <NAME>__blobServiceUri or <NAME>__serviceUri,
// <NAME>__queueServiceUri, <NAME>__tableServiceUri, <NAME>__credential,
// <NAME>__clientId (the suffixes in [AccountSuffixes]). [Names] lists every
// setting this package reads under a fixed name, [IsName] also the
// settings of the logs accounts AuditLogsAccounts lists (logs.go: one
// account per region holding vaults); [HostSettings] the ones a deployment
// sets for the Functions host, which kvaudit does not read.
//
// Secrets never leave this package in logs: [Account] implements
// slog.LogValuer and prints endpoints and the kind of credential only.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Setting names, as they appear in local.settings.json and app settings.
const (
	SettingLogsStorage     = "AuditLogsStorage"
	SettingIndexStorage    = "AuditIndexStorage"
	SettingLogsContainer   = "AuditLogsContainer"
	SettingTablePrefix     = "AuditIndexTablePrefix"
	SettingIngestWriters   = "IngestConcurrency"
	SettingQueryMaxDays    = "QueryMaxDays"
	SettingAPIKey          = "AuditApiKey"
	SettingLogLevel        = "AuditLogLevel"
	SettingCustomPort      = "FUNCTIONS_CUSTOMHANDLER_PORT"
	SettingCatchUpHours    = "CatchUpHours"
	SettingRetentionDays   = "RetentionDays"
	SettingMaxBlobTries    = "MaxBlobTries"
	SettingCatchUpSchedule = "CatchUpSchedule"
	SettingCatchUpBudget   = "CatchUpBudgetSeconds"
	SettingTriggerBudget   = "BlobTriggerBudgetSeconds"
	SettingEventBudget     = "EventGridBudgetSeconds"
	// SettingLogsRegion is the region of the AuditLogsStorage account, and
	// SettingLogsAccounts the other logs accounts (see logs.go).
	SettingLogsRegion   = "AuditLogsRegion"
	SettingLogsAccounts = "AuditLogsAccounts"
	SettingTryTimeout   = "StorageTryTimeoutSeconds"

	// Alerts (internal/alert). The URLs and the secret may be Key Vault
	// references in app settings: the platform resolves them before the
	// process starts.
	SettingAlertTuning          = "AlertTuning"
	SettingAlertWebhookURL      = "AlertWebhookUrl"
	SettingAlertWebhookSecret   = "AlertWebhookSecret"
	SettingAlertTeamsURL        = "AlertTeamsUrl"
	SettingAlertEventGridTopic  = "AlertEventGridTopicEndpoint"
	SettingAlertEventGridClient = "AlertEventGridClientId"
	SettingAlertPageURL         = "AlertPageUrl"
	// SettingWebsiteHostname is App Service's own variable, the app's
	// default host name: the web page's address in alerts when
	// AlertPageUrl is unset.
	SettingWebsiteHostname = "WEBSITE_HOSTNAME"
)

// AccountSettings are the settings that name a storage account: each is a
// connection string or the prefix of identity-based <NAME>__… settings.
var AccountSettings = []string{SettingLogsStorage, SettingIndexStorage}

// AccountSuffixes are the identity-based settings of an account, as Azure
// Functions names them. kvaudit reads blobs and tables; it accepts the
// queue endpoint because the host needs it on the trigger's connection (a
// blob trigger with an identity connection keeps its Event Grid
// notifications and poison messages in that account's queues).
var AccountSuffixes = []string{
	"__accountName",
	"__blobServiceUri",
	"__clientId",
	"__credential",
	"__queueServiceUri",
	"__serviceUri",
	"__tableServiceUri",
}

// HostSettings are app settings a deployment sets for the Functions host,
// not for kvaudit: the host's own storage, by identity, and Application
// Insights with identity authentication. kvaudit never reads them; they
// are listed here so that a deployment template can be checked against
// one place that knows every setting.
var HostSettings = []string{
	"AzureWebJobsStorage__accountName",
	"AzureWebJobsStorage__clientId",
	"AzureWebJobsStorage__credential",
	"APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
	"APPLICATIONINSIGHTS_CONNECTION_STRING",
}

// Names is every setting FromLookup reads under a fixed name, sorted: the
// plain settings, each account setting, and each account setting with
// every suffix of [AccountSuffixes]. The settings of the logs accounts
// that AuditLogsAccounts lists are named after them
// ([LogsAccountSetting]); [IsName] knows those too.
func Names() []string {
	names := []string{
		SettingLogsContainer, SettingTablePrefix, SettingIngestWriters, SettingQueryMaxDays,
		SettingAPIKey, SettingLogLevel, SettingCustomPort, SettingCatchUpHours,
		SettingRetentionDays, SettingMaxBlobTries, SettingCatchUpSchedule, SettingCatchUpBudget,
		SettingTriggerBudget, SettingEventBudget, SettingLogsRegion, SettingLogsAccounts, SettingTryTimeout,
		SettingAlertTuning, SettingAlertWebhookURL, SettingAlertWebhookSecret, SettingAlertTeamsURL,
		SettingAlertEventGridTopic, SettingAlertEventGridClient, SettingAlertPageURL, SettingWebsiteHostname,
	}
	for _, a := range AccountSettings {
		names = append(names, a)
		for _, suf := range AccountSuffixes {
			names = append(names, a+suf)
		}
	}
	slices.Sort(names)
	return names
}

// UnknownAccountSettings returns the names in environ ("NAME=value" pairs,
// as os.Environ gives them) that look like identity-based settings of an
// account kvaudit reads but that it does not know: a misspelt or miscased
// suffix (AuditLogsStorage__BlobServiceUri) that the host, which compares
// names without case, would accept and kvaudit would not see.
//
// A setting of a logs account that AuditLogsAccounts does not list
// (AuditLogsStorage_<name>, with or without a suffix) is unknown too: the
// account would not be read.
func UnknownAccountSettings(environ []string) []string {
	var unknown []string
	listed := map[string]bool{}
	for _, kv := range environ {
		if name, value, _ := strings.Cut(kv, "="); name == SettingLogsAccounts {
			entries, _ := parseLogsAccountList(value)
			for _, e := range entries {
				listed[e.name] = true
			}
		}
	}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		for _, a := range AccountSettings {
			suffix, ok := strings.CutPrefix(name, a+"__")
			if ok && !slices.Contains(AccountSuffixes, "__"+suffix) {
				unknown = append(unknown, name)
			}
		}
		if rest, ok := strings.CutPrefix(name, logsAccountPrefix); ok && !strings.HasPrefix(rest, "_") {
			acct, suffix, hasSuffix := strings.Cut(rest, "__")
			if !listed[acct] || hasSuffix && !slices.Contains(AccountSuffixes, "__"+suffix) {
				unknown = append(unknown, name)
			}
		}
	}
	slices.Sort(unknown)
	return unknown
}

// Azurite's well-known development account (public, documented by Microsoft).
const (
	DevAccountName = "devstoreaccount1"
	DevAccountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// DevConnectionString is what "UseDevelopmentStorage=true" stands for.
const DevConnectionString = "DefaultEndpointsProtocol=http;AccountName=" + DevAccountName +
	";AccountKey=" + DevAccountKey +
	";BlobEndpoint=http://127.0.0.1:10000/" + DevAccountName +
	";QueueEndpoint=http://127.0.0.1:10001/" + DevAccountName +
	";TableEndpoint=http://127.0.0.1:10002/" + DevAccountName + ";"

// Settings is every setting kvaudit reads. The zero value is not useful:
// build it with [Load] or [FromLookup], which apply defaults and validate.
type Settings struct {
	// Logs is the first account holding insights-logs-auditevent
	// (AuditLogsStorage, the blob trigger's connection). Index is the
	// account holding the tables; when AuditIndexStorage is unset it is
	// the first logs account.
	Logs  Account
	Index Account
	// LogsAccounts is every logs account kvaudit reads, the first one
	// (AuditLogsStorage) first, then those AuditLogsAccounts lists, in its
	// order. Names are distinct.
	LogsAccounts []LogsAccount

	LogsContainer string // default "insights-logs-auditevent"
	TablePrefix   string // default "kvaudit": tables kvauditEvents, kvauditPostings, kvauditBlobs

	IngestConcurrency int           // partitions written at once, default 8
	QueryMaxDays      int           // longest query window, default 31
	CatchUpHours      int           // hours of blobs CatchUp looks at, default 3
	RetentionDays     int           // index days kept, default 90
	MaxBlobTries      int           // failures before a blob is parked, default 5
	CatchUpSchedule   string        // NCRONTAB, default every 2 minutes
	CatchUpBudget     time.Duration // a timer run stops at a checkpoint after this, default 4 min
	// BlobTriggerBudget: a BlobTrigger invocation stops at a checkpoint
	// after this and leaves the rest to CatchUp, default 5 min: half of
	// host.json's functionTimeout (10 min), leaving the other half for the
	// 4 MiB chunk in flight when it runs out (seconds, more under
	// throttling retries) and the host's own work.
	BlobTriggerBudget time.Duration
	// EventGridBudget: an EventGridTrigger invocation stops at a
	// checkpoint after this, default 20 s. Event Grid waits 30 s for an
	// answer and then delivers the event again
	// (learn.microsoft.com/azure/event-grid/delivery-and-retry).
	EventGridBudget time.Duration
	APIKey          string        // required on /api/ when standalone and non-loopback
	LogLevel        slog.Level    // default info
	Port            int           // from FUNCTIONS_CUSTOMHANDLER_PORT; 0 when unset
	StartedAt       time.Time     // when the settings were read
	RequestTimeout  time.Duration // per storage call, default 30 s

	// TryTimeout is how long one try of a storage request may take, its
	// response body included, before the client gives it up and tries
	// again (azcore's policy.RetryOptions.TryTimeout), default 60 s.
	TryTimeout time.Duration

	Alerts AlertSettings
}

// AlertSettings are where alerts go and how they are tuned. The secrets
// (WebhookSecret, and the URLs, which carry keys in their query) are never
// printed: String shows hosts only.
type AlertSettings struct {
	// Tuning is AlertTuning as given (JSON; "" for the defaults), parsed
	// and validated by internal/alert at start.
	Tuning        string
	WebhookURL    string
	WebhookSecret string
	TeamsURL      string
	// EventGridTopic is the topic's endpoint, https://…/api/events;
	// EventGridClientID the user-assigned identity publishing to it
	// ("" for DefaultAzureCredential).
	EventGridTopic    string
	EventGridClientID string
	// PageURL is the web page's address in alerts' links: AlertPageUrl,
	// else https://$WEBSITE_HOSTNAME/api/audit/ui, else "".
	PageURL string
}

// String names the sinks configured and their hosts, never a path, query
// or secret.
func (a AlertSettings) String() string {
	var parts []string
	for _, s := range []struct{ name, u string }{{"webhook", a.WebhookURL}, {"teams", a.TeamsURL}, {"eventgrid", a.EventGridTopic}} {
		if s.u == "" {
			continue
		}
		host := "(set)"
		if p, err := url.Parse(s.u); err == nil && p.Host != "" {
			host = p.Scheme + "://" + p.Host
		}
		parts = append(parts, s.name+"="+host)
	}
	if len(parts) == 0 {
		return "no sinks"
	}
	return strings.Join(parts, " ")
}

// Account is one storage account setting, resolved.
type Account struct {
	Setting  string // the setting's name, for messages
	Name     string // account name ("" when only URIs were given)
	BlobURL  string // service endpoint, no trailing slash
	TableURL string
	// QueueURL is the queue endpoint when one was given or follows from a
	// connection string. kvaudit does not use queues; the Functions host
	// does, on the blob trigger's connection.
	QueueURL string

	// Exactly one way to authenticate is set: Key (shared key from a
	// connection string), SAS (a connection string's SharedAccessSignature),
	// or Identity (azidentity; ClientID picks a user-assigned identity).
	Key      string
	SAS      string
	Identity bool
	// Credential is "managedidentity" or "" (DefaultAzureCredential).
	Credential string
	ClientID   string
}

// LogValue prints where the account is and how it authenticates, never a
// key or a token.
func (a Account) LogValue() slog.Value {
	auth := "sharedkey"
	switch {
	case a.Identity && a.Credential != "":
		auth = a.Credential
	case a.Identity:
		auth = "default-azure-credential"
	case a.SAS != "":
		auth = "sas"
	}
	return slog.GroupValue(
		slog.String("setting", a.Setting),
		slog.String("blob", a.BlobURL),
		slog.String("table", a.TableURL),
		slog.String("auth", auth),
	)
}

// String is LogValue for fmt: keys never print.
func (a Account) String() string { return a.LogValue().String() }

// Load reads the settings from the process environment.
func Load() (*Settings, error) { return FromLookup(os.LookupEnv) }

// FromLookup reads the settings through lookup (os.LookupEnv in production,
// a map in tests). The error names every missing or malformed setting, not
// just the first.
func FromLookup(lookup func(string) (string, bool)) (*Settings, error) {
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	s := &Settings{
		LogsContainer:     "insights-logs-auditevent",
		TablePrefix:       "kvaudit",
		IngestConcurrency: 8,
		QueryMaxDays:      31,
		CatchUpHours:      3,
		RetentionDays:     90,
		MaxBlobTries:      5,
		CatchUpSchedule:   "0 */2 * * * *",
		CatchUpBudget:     4 * time.Minute,
		BlobTriggerBudget: 5 * time.Minute,
		EventGridBudget:   20 * time.Second,
		TryTimeout:        time.Minute,
		LogLevel:          slog.LevelInfo,
		RequestTimeout:    30 * time.Second,
		StartedAt:         time.Now(),
	}
	var errs []error
	budgetSeconds := int(s.CatchUpBudget / time.Second)
	triggerSeconds := int(s.BlobTriggerBudget / time.Second)
	eventSeconds := int(s.EventGridBudget / time.Second)
	trySeconds := int(s.TryTimeout / time.Second)

	var err error
	if s.Logs, err = readAccount(SettingLogsStorage, get); err != nil {
		errs = append(errs, err)
	}
	if hasAccount(SettingIndexStorage, get) {
		if s.Index, err = readAccount(SettingIndexStorage, get); err != nil {
			errs = append(errs, err)
		}
	} else {
		s.Index = s.Logs
	}
	if s.Index.TableURL == "" && err == nil && s.Logs.Setting != "" {
		errs = append(errs, fmt.Errorf("%s: no table endpoint: set TableEndpoint in the connection string, or %s__tableServiceUri", s.Index.Setting, s.Index.Setting))
	}

	if v := get(SettingLogsContainer); v != "" {
		s.LogsContainer = v
	}
	if v := get(SettingTablePrefix); v != "" {
		if !validTablePrefix(v) {
			errs = append(errs, fmt.Errorf("%s=%q: want 3 to 40 letters and digits, starting with a letter", SettingTablePrefix, v))
		} else {
			s.TablePrefix = v
		}
	}
	ints := []struct {
		name     string
		dst      *int
		min, max int
	}{
		{SettingIngestWriters, &s.IngestConcurrency, 1, 256},
		{SettingQueryMaxDays, &s.QueryMaxDays, 1, 3660},
		{SettingCatchUpHours, &s.CatchUpHours, 1, 24 * 31},
		{SettingRetentionDays, &s.RetentionDays, 1, 36600},
		{SettingMaxBlobTries, &s.MaxBlobTries, 1, 1000},
		{SettingCatchUpBudget, &budgetSeconds, 5, 3600},
		{SettingTriggerBudget, &triggerSeconds, 5, 3600},
		// Past 25 s Event Grid's 30 s wait would run out mid-chunk.
		{SettingEventBudget, &eventSeconds, 1, 25},
		{SettingTryTimeout, &trySeconds, 1, 600},
	}
	for _, in := range ints {
		v := get(in.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < in.min || n > in.max {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number from %d to %d", in.name, v, in.min, in.max))
			continue
		}
		*in.dst = n
	}
	s.CatchUpBudget = time.Duration(budgetSeconds) * time.Second
	s.BlobTriggerBudget = time.Duration(triggerSeconds) * time.Second
	s.EventGridBudget = time.Duration(eventSeconds) * time.Second
	if s.Logs.Setting != "" {
		accounts, lerrs := readLogsAccounts(s.Logs, get) // logs.go
		errs = append(errs, lerrs...)
		s.LogsAccounts = accounts
	}
	s.TryTimeout = time.Duration(trySeconds) * time.Second
	if v := get(SettingCatchUpSchedule); v != "" {
		if err := checkSchedule(v); err != nil { // schedule.go
			errs = append(errs, fmt.Errorf("%s=%q: %w; want a six-field NCRONTAB expression (second minute hour day month day-of-week, as 0 */2 * * * *) or a TimeSpan (00:05:00, 1.00:00:00)", SettingCatchUpSchedule, v, err))
		} else {
			s.CatchUpSchedule = v
		}
	}
	s.APIKey = get(SettingAPIKey)
	if v := get(SettingLogLevel); v != "" {
		if err := s.LogLevel.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want debug, info, warn or error", SettingLogLevel, v))
		}
	}
	if v := get(SettingCustomPort); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s=%q: want a TCP port from 1 to 65535", SettingCustomPort, v))
		} else {
			s.Port = p
		}
	}
	s.Alerts, err = readAlerts(get)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return s, nil
}

// keyVaultReference is how an app setting names a Key Vault secret; App
// Service replaces it with the secret's value before the process starts,
// and leaves it as it is when it cannot (Learn: "Use Key Vault references
// as app settings in Azure App Service and Azure Functions").
const keyVaultReference = "@Microsoft.KeyVault("

// readAlerts reads the alert settings. Values are checked for shape only;
// messages name the setting, never quote a secret.
func readAlerts(get func(string) string) (AlertSettings, error) {
	a := AlertSettings{
		Tuning:            get(SettingAlertTuning),
		WebhookURL:        get(SettingAlertWebhookURL),
		WebhookSecret:     get(SettingAlertWebhookSecret),
		TeamsURL:          get(SettingAlertTeamsURL),
		EventGridTopic:    get(SettingAlertEventGridTopic),
		EventGridClientID: get(SettingAlertEventGridClient),
		PageURL:           get(SettingAlertPageURL),
	}
	var errs []error
	for name, v := range map[string]string{
		SettingAlertWebhookURL: a.WebhookURL, SettingAlertWebhookSecret: a.WebhookSecret, SettingAlertTeamsURL: a.TeamsURL,
		SettingAlertEventGridTopic: a.EventGridTopic, SettingAlertTuning: a.Tuning,
	} {
		if strings.HasPrefix(v, keyVaultReference) {
			errs = append(errs, fmt.Errorf("%s is a Key Vault reference the platform did not resolve: give the app's identity the Key Vault Secrets User role on the vault (and set keyVaultReferenceIdentity to a user-assigned identity's id), then restart the app", name))
		}
	}
	if len(errs) > 0 {
		return a, errors.Join(errs...)
	}
	checkURL := func(name, v string, httpsOnly bool) {
		if v == "" {
			return
		}
		u, err := url.Parse(v)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			errs = append(errs, fmt.Errorf("%s: not an http(s) URL", name))
			return
		}
		if u.Scheme == "http" && (httpsOnly || !loopbackHost(u.Hostname())) {
			errs = append(errs, fmt.Errorf("%s: want https (plain http only to a loopback receiver, for make run)", name))
		}
	}
	checkURL(SettingAlertWebhookURL, a.WebhookURL, false)
	checkURL(SettingAlertTeamsURL, a.TeamsURL, false)
	checkURL(SettingAlertEventGridTopic, a.EventGridTopic, true)
	checkURL(SettingAlertPageURL, a.PageURL, false)
	switch {
	case a.WebhookURL != "" && a.WebhookSecret == "":
		errs = append(errs, fmt.Errorf("%s is set without %s: a webhook is always signed (whsec_ followed by base64 of 24 to 64 random bytes)", SettingAlertWebhookURL, SettingAlertWebhookSecret))
	case a.WebhookURL == "" && a.WebhookSecret != "":
		errs = append(errs, fmt.Errorf("%s is set without %s", SettingAlertWebhookSecret, SettingAlertWebhookURL))
	}
	if a.EventGridClientID != "" && a.EventGridTopic == "" {
		errs = append(errs, fmt.Errorf("%s is set without %s", SettingAlertEventGridClient, SettingAlertEventGridTopic))
	}
	if a.PageURL == "" {
		if h := get(SettingWebsiteHostname); h != "" && !strings.ContainsAny(h, "/?#@ ") {
			a.PageURL = "https://" + h + "/api/audit/ui"
		}
	}
	return a, errors.Join(errs...)
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func validTablePrefix(v string) bool {
	if len(v) < 3 || len(v) > 40 {
		return false
	}
	for i, c := range v {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func hasAccount(name string, get func(string) string) bool {
	if get(name) != "" {
		return true
	}
	for _, k := range AccountSuffixes {
		if k == "__credential" || k == "__clientId" {
			continue // how to authenticate, not where: no account by themselves
		}
		if get(name+k) != "" {
			return true
		}
	}
	return false
}

// readAccount resolves setting name from a connection string or, when that
// is absent, from the identity-based <name>__… settings.
func readAccount(name string, get func(string) string) (Account, error) {
	if cs := get(name); cs != "" {
		a, err := ParseConnectionString(cs)
		if err != nil {
			return Account{}, fmt.Errorf("%s: %w", name, err)
		}
		a.Setting = name
		return a, nil
	}
	a := Account{Setting: name, Identity: true}
	a.BlobURL = get(name + "__blobServiceUri")
	if a.BlobURL == "" {
		a.BlobURL = get(name + "__serviceUri")
	}
	a.TableURL = get(name + "__tableServiceUri")
	a.QueueURL = get(name + "__queueServiceUri")
	if acct := get(name + "__accountName"); acct != "" {
		// Functions also accepts an account name alone for the public cloud.
		if a.BlobURL == "" {
			a.BlobURL = "https://" + acct + ".blob.core.windows.net"
		}
		if a.TableURL == "" {
			a.TableURL = "https://" + acct + ".table.core.windows.net"
		}
		if a.QueueURL == "" {
			a.QueueURL = "https://" + acct + ".queue.core.windows.net"
		}
	}
	a.Credential = strings.ToLower(get(name + "__credential"))
	a.ClientID = get(name + "__clientId")
	if a.BlobURL == "" && a.TableURL == "" {
		return Account{}, fmt.Errorf("%s is not set: give a connection string (UseDevelopmentStorage=true for Azurite) or %s__blobServiceUri and %s__tableServiceUri for identity-based access", name, name, name)
	}
	if a.Credential != "" && a.Credential != "managedidentity" {
		return Account{}, fmt.Errorf("%s__credential=%q: the only accepted value is managedidentity (leave it unset for DefaultAzureCredential)", name, a.Credential)
	}
	for _, u := range []*string{&a.BlobURL, &a.TableURL, &a.QueueURL} {
		if *u == "" {
			continue
		}
		norm, err := normalizeEndpoint(*u)
		if err != nil {
			return Account{}, fmt.Errorf("%s: %w", name, err)
		}
		*u = norm
	}
	return a, nil
}

func normalizeEndpoint(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("endpoint %q is not an http(s) URL", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// ParseConnectionString reads an Azure Storage connection string. It accepts
// UseDevelopmentStorage=true (Azurite's well-known account and ports),
// AccountName/AccountKey with explicit BlobEndpoint/TableEndpoint or with
// DefaultEndpointsProtocol/EndpointSuffix, and SharedAccessSignature. The
// error never quotes the string (it holds a key).
func ParseConnectionString(cs string) (Account, error) {
	if strings.EqualFold(strings.ReplaceAll(strings.TrimSpace(cs), " ", ""), "UseDevelopmentStorage=true") {
		cs = DevConnectionString
	}
	kv := map[string]string{}
	for _, part := range strings.Split(cs, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return Account{}, errors.New("connection string: a part has no '=' (want Key=Value pairs separated by ';')")
		}
		kv[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	if strings.EqualFold(kv["usedevelopmentstorage"], "true") {
		return ParseConnectionString(DevConnectionString)
	}
	a := Account{Name: kv["accountname"], Key: kv["accountkey"], SAS: strings.TrimPrefix(kv["sharedaccesssignature"], "?")}
	if a.Key == "" && a.SAS == "" {
		return Account{}, errors.New("connection string: no AccountKey or SharedAccessSignature")
	}
	if a.Key != "" && a.Name == "" {
		return Account{}, errors.New("connection string: AccountKey without AccountName")
	}
	proto := kv["defaultendpointsprotocol"]
	if proto == "" {
		proto = "https"
	}
	suffix := kv["endpointsuffix"]
	if suffix == "" {
		suffix = "core.windows.net"
	}
	endpoint := func(key, service string) (string, error) {
		if v := kv[key]; v != "" {
			return normalizeEndpoint(v)
		}
		if a.Name == "" {
			return "", nil
		}
		return fmt.Sprintf("%s://%s.%s.%s", proto, a.Name, service, suffix), nil
	}
	var err error
	if a.BlobURL, err = endpoint("blobendpoint", "blob"); err != nil {
		return Account{}, fmt.Errorf("connection string: BlobEndpoint: %w", err)
	}
	if a.TableURL, err = endpoint("tableendpoint", "table"); err != nil {
		return Account{}, fmt.Errorf("connection string: TableEndpoint: %w", err)
	}
	if a.QueueURL, err = endpoint("queueendpoint", "queue"); err != nil {
		return Account{}, fmt.Errorf("connection string: QueueEndpoint: %w", err)
	}
	if a.BlobURL == "" && a.TableURL == "" {
		return Account{}, errors.New("connection string: no AccountName and no BlobEndpoint or TableEndpoint")
	}
	return a, nil
}
