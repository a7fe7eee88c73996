package config

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFromLookup(t *testing.T) {
	azurite := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + DevAccountKey +
		";BlobEndpoint=http://127.0.0.1:41000/devstoreaccount1;TableEndpoint=http://127.0.0.1:41002/devstoreaccount1;"
	tests := []struct {
		name    string
		env     map[string]string
		check   func(t *testing.T, s *Settings)
		wantErr []string
	}{
		{
			name: "development storage expands to Azurite",
			env:  map[string]string{SettingLogsStorage: "UseDevelopmentStorage=true"},
			check: func(t *testing.T, s *Settings) {
				if s.Logs.BlobURL != "http://127.0.0.1:10000/devstoreaccount1" || s.Logs.TableURL != "http://127.0.0.1:10002/devstoreaccount1" {
					t.Errorf("endpoints = %q %q", s.Logs.BlobURL, s.Logs.TableURL)
				}
				if s.Logs.Name != DevAccountName || s.Logs.Key != DevAccountKey {
					t.Errorf("account = %q", s.Logs.Name)
				}
				if s.Index != s.Logs {
					t.Errorf("index account should default to the logs account")
				}
				if s.LogsContainer != "insights-logs-auditevent" || s.TablePrefix != "kvaudit" || s.IngestConcurrency != 8 || s.QueryMaxDays != 31 || s.BlobTriggerBudget != 5*time.Minute {
					t.Errorf("defaults not applied: %+v", s)
				}
			},
		},
		{
			name: "explicit endpoints and port",
			env:  map[string]string{SettingLogsStorage: azurite, SettingIndexStorage: azurite, SettingCustomPort: "7071", SettingIngestWriters: "3"},
			check: func(t *testing.T, s *Settings) {
				if s.Index.TableURL != "http://127.0.0.1:41002/devstoreaccount1" || s.Port != 7071 || s.IngestConcurrency != 3 {
					t.Errorf("got %+v", s)
				}
			},
		},
		{
			name: "public cloud from account name and key",
			env:  map[string]string{SettingLogsStorage: "DefaultEndpointsProtocol=https;AccountName=logs;AccountKey=a2V5;EndpointSuffix=core.windows.net"},
			check: func(t *testing.T, s *Settings) {
				if s.Logs.BlobURL != "https://logs.blob.core.windows.net" || s.Logs.TableURL != "https://logs.table.core.windows.net" {
					t.Errorf("endpoints = %q %q", s.Logs.BlobURL, s.Logs.TableURL)
				}
			},
		},
		{
			name: "identity based",
			env: map[string]string{
				SettingLogsStorage + "__blobServiceUri":   "https://logs.blob.core.windows.net/",
				SettingIndexStorage + "__serviceUri":      "https://idx.blob.core.windows.net",
				SettingIndexStorage + "__tableServiceUri": "https://idx.table.core.windows.net",
				SettingIndexStorage + "__credential":      "managedidentity",
				SettingIndexStorage + "__clientId":        "0000-1111",
			},
			check: func(t *testing.T, s *Settings) {
				if !s.Logs.Identity || s.Logs.BlobURL != "https://logs.blob.core.windows.net" {
					t.Errorf("logs = %+v", s.Logs)
				}
				if !s.Index.Identity || s.Index.Credential != "managedidentity" || s.Index.ClientID != "0000-1111" || s.Index.TableURL != "https://idx.table.core.windows.net" {
					t.Errorf("index = %+v", s.Index)
				}
			},
		},
		{
			name:    "missing logs account",
			env:     map[string]string{},
			wantErr: []string{"AuditLogsStorage is not set"},
		},
		{
			name:    "every bad setting named at once",
			env:     map[string]string{SettingLogsStorage: "AccountName=x", SettingCustomPort: "http", SettingQueryMaxDays: "0", SettingTablePrefix: "1bad"},
			wantErr: []string{"AuditLogsStorage: connection string: no AccountKey", "FUNCTIONS_CUSTOMHANDLER_PORT=\"http\"", "QueryMaxDays=\"0\"", "AuditIndexTablePrefix=\"1bad\""},
		},
		{
			name: "BlobTrigger time budget",
			env:  map[string]string{SettingLogsStorage: "UseDevelopmentStorage=true", SettingTriggerBudget: "90"},
			check: func(t *testing.T, s *Settings) {
				if s.BlobTriggerBudget != 90*time.Second {
					t.Errorf("BlobTriggerBudget = %v, want 90s", s.BlobTriggerBudget)
				}
			},
		},
		{
			name:    "BlobTrigger time budget out of range",
			env:     map[string]string{SettingLogsStorage: "UseDevelopmentStorage=true", SettingTriggerBudget: "4"},
			wantErr: []string{"BlobTriggerBudgetSeconds=\"4\": want a whole number from 5 to 3600"},
		},
		{
			name: "storage try timeout",
			env:  map[string]string{SettingLogsStorage: "UseDevelopmentStorage=true", SettingTryTimeout: "5"},
			check: func(t *testing.T, s *Settings) {
				if s.TryTimeout != 5*time.Second {
					t.Errorf("TryTimeout = %v, want 5s", s.TryTimeout)
				}
			},
		},
		{
			name: "storage try timeout by default",
			env:  map[string]string{SettingLogsStorage: "UseDevelopmentStorage=true"},
			check: func(t *testing.T, s *Settings) {
				if s.TryTimeout != time.Minute {
					t.Errorf("TryTimeout = %v, want 1m0s", s.TryTimeout)
				}
			},
		},
		{
			name:    "storage try timeout out of range",
			env:     map[string]string{SettingLogsStorage: "UseDevelopmentStorage=true", SettingTryTimeout: "0"},
			wantErr: []string{"StorageTryTimeoutSeconds=\"0\": want a whole number from 1 to 600"},
		},
		{
			name:    "malformed connection string",
			env:     map[string]string{SettingLogsStorage: "this is not one"},
			wantErr: []string{"AuditLogsStorage: connection string: a part has no '='"},
		},
		{
			name:    "unknown credential",
			env:     map[string]string{SettingLogsStorage + "__blobServiceUri": "https://x.blob.core.windows.net", SettingLogsStorage + "__tableServiceUri": "https://x.table.core.windows.net", SettingLogsStorage + "__credential": "password"},
			wantErr: []string{"the only accepted value is managedidentity"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := FromLookup(lookup(tt.env))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, want %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

// Keys must never reach logs or error messages.
func TestSecretsNeverPrinted(t *testing.T) {
	const key = "c2VjcmV0LWtleS1zaG91bGQtbm90LWxlYWs="
	s, err := FromLookup(lookup(map[string]string{SettingLogsStorage: "AccountName=a;AccountKey=" + key}))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", slog.Any("logs", s.Logs))
	fmt.Fprintf(&b, "%v %+v %s", s.Logs, s.Logs, s.Logs)
	if strings.Contains(b.String(), key) || strings.Contains(b.String(), "c2VjcmV0") {
		t.Fatalf("key printed: %s", b.String())
	}
	_, err = FromLookup(lookup(map[string]string{SettingLogsStorage: "AccountKey=" + key}))
	if err == nil || strings.Contains(err.Error(), key) {
		t.Fatalf("error %v", err)
	}
}

// Every identity-based setting a Flex Consumption deployment sets on the
// trigger's connection is accepted, the queue endpoint included (the host
// uses it; kvaudit keeps it and does not warn about it).
func TestIdentityAccountWithQueueEndpoint(t *testing.T) {
	env := map[string]string{
		SettingLogsStorage + "__blobServiceUri":    "https://logs.blob.core.windows.net",
		SettingLogsStorage + "__queueServiceUri":   "https://logs.queue.core.windows.net/",
		SettingLogsStorage + "__credential":        "managedidentity",
		SettingLogsStorage + "__clientId":          "cid",
		SettingIndexStorage + "__blobServiceUri":   "https://idx.blob.core.windows.net",
		SettingIndexStorage + "__tableServiceUri":  "https://idx.table.core.windows.net",
		SettingIndexStorage + "__credential":       "managedidentity",
		SettingIndexStorage + "__clientId":         "cid",
		"AzureWebJobsStorage__accountName":         "hoststorage",
		SettingLogsStorage + "__bogus":             "x",
		SettingIndexStorage + "__TableServiceUri":  "x",
		"AuditLogsStorageX__blobServiceUri":        "x",
		SettingLogsStorage + "__queueServiceUri=x": "not a name pair",
	}
	s, err := FromLookup(lookup(env))
	if err != nil {
		t.Fatal(err)
	}
	if s.Logs.QueueURL != "https://logs.queue.core.windows.net" || s.Logs.ClientID != "cid" || s.Logs.Credential != "managedidentity" {
		t.Errorf("logs = %+v", s.Logs)
	}
	if s.Index.TableURL != "https://idx.table.core.windows.net" || s.Index.QueueURL != "" {
		t.Errorf("index = %+v", s.Index)
	}
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	got := UnknownAccountSettings(environ)
	want := []string{SettingIndexStorage + "__TableServiceUri", SettingLogsStorage + "__bogus"}
	if !slices.Equal(got, want) {
		t.Errorf("UnknownAccountSettings = %q, want %q", got, want)
	}
}

func TestQueueEndpointFromConnectionString(t *testing.T) {
	s, err := FromLookup(lookup(map[string]string{SettingLogsStorage: "UseDevelopmentStorage=true"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.Logs.QueueURL != "http://127.0.0.1:10001/devstoreaccount1" {
		t.Errorf("QueueURL = %q", s.Logs.QueueURL)
	}
	a, err := ParseConnectionString("DefaultEndpointsProtocol=https;AccountName=logs;AccountKey=a2V5;EndpointSuffix=core.windows.net")
	if err != nil || a.QueueURL != "https://logs.queue.core.windows.net" {
		t.Errorf("QueueURL = %q, %v", a.QueueURL, err)
	}
}

// Names is what a deployment template is checked against: it must hold
// every setting FromLookup asks for, and nothing it does not.
func TestNamesAreWhatFromLookupReads(t *testing.T) {
	asked := map[string]bool{}
	for _, env := range []map[string]string{
		{},
		{SettingLogsStorage: "UseDevelopmentStorage=true"},
		{SettingLogsStorage + "__serviceUri": "https://l.blob.core.windows.net", SettingIndexStorage + "__accountName": "i"},
	} {
		_, _ = FromLookup(func(k string) (string, bool) {
			asked[k] = true
			v, ok := env[k]
			return v, ok
		})
	}
	names := Names()
	if !slices.IsSorted(names) {
		t.Errorf("Names not sorted: %q", names)
	}
	for k := range asked {
		if !slices.Contains(names, k) {
			t.Errorf("FromLookup reads %s, which Names does not list", k)
		}
	}
	for _, n := range names {
		if !asked[n] {
			t.Errorf("Names lists %s, which FromLookup never reads", n)
		}
	}
	for _, h := range HostSettings {
		if slices.Contains(names, h) {
			t.Errorf("%s is both the host's and kvaudit's", h)
		}
	}
}

func TestAlertSettings(t *testing.T) {
	const secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	base := map[string]string{SettingLogsStorage: "UseDevelopmentStorage=true"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		env  map[string]string
		err  string
		page string
	}{
		{with(), "", ""},
		{with(SettingWebsiteHostname, "func-kvaudit.azurewebsites.net"), "", "https://func-kvaudit.azurewebsites.net/api/audit/ui"},
		{with(SettingAlertPageURL, "https://audit.example/api/audit/ui", SettingWebsiteHostname, "x.net"), "", "https://audit.example/api/audit/ui"},
		{with(SettingAlertWebhookURL, "https://hooks.example/kv?token=abc", SettingAlertWebhookSecret, secret), "", ""},
		{with(SettingAlertWebhookURL, "http://127.0.0.1:9999/hook", SettingAlertWebhookSecret, secret), "", ""},
		{with(SettingAlertWebhookURL, "http://hooks.example/kv", SettingAlertWebhookSecret, secret), "AlertWebhookUrl: want https", ""},
		{with(SettingAlertWebhookURL, "https://hooks.example/kv"), "AlertWebhookUrl is set without AlertWebhookSecret", ""},
		{with(SettingAlertWebhookSecret, secret), "AlertWebhookSecret is set without AlertWebhookUrl", ""},
		{with(SettingAlertTeamsURL, "not a url"), "AlertTeamsUrl: not an http(s) URL", ""},
		{with(SettingAlertEventGridTopic, "http://127.0.0.1:1/api/events"), "AlertEventGridTopicEndpoint: want https", ""},
		{with(SettingAlertEventGridClient, "abc"), "AlertEventGridClientId is set without AlertEventGridTopicEndpoint", ""},
		{with(SettingAlertWebhookSecret, "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/hook/)", SettingAlertWebhookURL, "https://h.example"),
			"AlertWebhookSecret is a Key Vault reference the platform did not resolve", ""},
	}
	for _, c := range cases {
		s, err := FromLookup(lookup(c.env))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%v: %v", c.env, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%v: error %v, want %q", c.env, err, c.err)
		case err != nil && strings.Contains(err.Error(), "MDEyMzQ1"):
			t.Errorf("the secret is in the error: %v", err)
		case c.err == "" && s.Alerts.PageURL != c.page:
			t.Errorf("%v: page %q, want %q", c.env, s.Alerts.PageURL, c.page)
		}
	}
	s, _ := FromLookup(lookup(with(SettingAlertWebhookURL, "https://hooks.example/kv?token=abc", SettingAlertWebhookSecret, secret, SettingAlertTeamsURL, "https://x.logic.azure.com/workflows/1?sig=zzz")))
	if got := fmt.Sprint(s.Alerts); got != "webhook=https://hooks.example teams=https://x.logic.azure.com" {
		t.Fatalf("String %q", got)
	}
}
