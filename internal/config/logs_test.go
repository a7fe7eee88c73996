package config

import (
	"slices"
	"strings"
	"testing"
)

func TestLogsAccounts(t *testing.T) {
	logs2 := "DefaultEndpointsProtocol=http;AccountName=logstwo;AccountKey=" + DevAccountKey +
		";BlobEndpoint=http://127.0.0.1:41010/logstwo;"
	tests := []struct {
		name    string
		env     map[string]string
		want    []LogsAccount // Name, Region, First and Account.BlobURL compared
		wantErr []string
	}{
		{
			name: "one account, as before",
			env:  map[string]string{SettingLogsStorage: "UseDevelopmentStorage=true"},
			want: []LogsAccount{{Name: DevAccountName, First: true, Account: Account{BlobURL: "http://127.0.0.1:10000/devstoreaccount1"}}},
		},
		{
			name: "regions and a second account by connection string",
			env: map[string]string{
				SettingLogsStorage:            "UseDevelopmentStorage=true",
				SettingLogsRegion:             "West Europe",
				SettingLogsAccounts:           "logstwo:northeurope",
				LogsAccountSetting("logstwo"): logs2,
			},
			want: []LogsAccount{
				{Name: DevAccountName, Region: "westeurope", First: true, Account: Account{BlobURL: "http://127.0.0.1:10000/devstoreaccount1"}},
				{Name: "logstwo", Region: "northeurope", Account: Account{BlobURL: "http://127.0.0.1:41010/logstwo"}},
			},
		},
		{
			name: "identity-based accounts in Azure",
			env: map[string]string{
				SettingLogsStorage + "__blobServiceUri":                "https://stkvlogsweu.blob.core.windows.net",
				SettingLogsStorage + "__credential":                    "managedidentity",
				SettingIndexStorage + "__tableServiceUri":              "https://stkvindex.table.core.windows.net",
				SettingLogsAccounts:                                    "stkvlogseus:eastus, stkvlogsneu:northeurope",
				LogsAccountSetting("stkvlogseus") + "__blobServiceUri": "https://stkvlogseus.blob.core.windows.net/",
				LogsAccountSetting("stkvlogseus") + "__credential":     "managedidentity",
				LogsAccountSetting("stkvlogseus") + "__clientId":       "cid",
				LogsAccountSetting("stkvlogsneu") + "__accountName":    "stkvlogsneu",
			},
			want: []LogsAccount{
				{Name: "stkvlogsweu", First: true, Account: Account{BlobURL: "https://stkvlogsweu.blob.core.windows.net"}},
				{Name: "stkvlogseus", Region: "eastus", Account: Account{BlobURL: "https://stkvlogseus.blob.core.windows.net"}},
				{Name: "stkvlogsneu", Region: "northeurope", Account: Account{BlobURL: "https://stkvlogsneu.blob.core.windows.net"}},
			},
		},
		{
			name:    "a listed account without settings",
			env:     map[string]string{SettingLogsStorage: "UseDevelopmentStorage=true", SettingLogsAccounts: "logstwo"},
			wantErr: []string{"AuditLogsAccounts lists \"logstwo\" but AuditLogsStorage_logstwo is not set"},
		},
		{
			name: "a name that is not the account's",
			env: map[string]string{SettingLogsStorage: "UseDevelopmentStorage=true", SettingLogsAccounts: "other",
				LogsAccountSetting("other"): logs2},
			wantErr: []string{"AuditLogsStorage_other names account \"logstwo\""},
		},
		{
			name: "the first account listed again, a bad name, a duplicate, a bad region",
			env: map[string]string{SettingLogsStorage: "UseDevelopmentStorage=true", SettingLogsRegion: "west-europe",
				SettingLogsAccounts: "devstoreaccount1,Bad_Name,logstwo,logstwo,x1y:e/u", LogsAccountSetting("logstwo"): logs2},
			wantErr: []string{
				"is the account of AuditLogsStorage already", "\"bad_name\" is not a storage account name",
				"\"logstwo\" is listed twice", "region \"e/u\"", "AuditLogsRegion=\"west-europe\"",
			},
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
			if len(s.LogsAccounts) != len(tt.want) {
				t.Fatalf("got %d accounts %v, want %d", len(s.LogsAccounts), s.LogsAccounts, len(tt.want))
			}
			for i, w := range tt.want {
				g := s.LogsAccounts[i]
				if g.Name != w.Name || g.Region != w.Region || g.First != w.First || g.Account.BlobURL != w.Account.BlobURL {
					t.Errorf("account %d = %s first=%v, want %s first=%v", i, g, g.First, w, w.First)
				}
			}
			if s.LogsAccounts[0].Account != s.Logs {
				t.Error("the first logs account is not AuditLogsStorage")
			}
		})
	}
}

// An event names a URL: only URLs under a configured account's blob
// endpoint and in the logs container resolve.
func TestBlobOf(t *testing.T) {
	s, err := FromLookup(lookup(map[string]string{
		SettingLogsStorage:  "UseDevelopmentStorage=true",
		SettingLogsAccounts: "stkvlogseus:eastus",
		LogsAccountSetting("stkvlogseus") + "__blobServiceUri": "https://stkvlogseus.blob.core.windows.net",
	}))
	if err != nil {
		t.Fatal(err)
	}
	const path = "resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV/y=2026/m=01/d=02/h=03/m=00/PT1H.json"
	tests := []struct {
		url      string
		account  string // "" when refused
		wantPath string
	}{
		{"http://127.0.0.1:10000/devstoreaccount1/insights-logs-auditevent/" + path, DevAccountName, path},
		{"https://stkvlogseus.blob.core.windows.net/insights-logs-auditevent/" + path, "stkvlogseus", path},
		{"https://STKVLOGSEUS.blob.core.windows.net/insights-logs-auditevent/resourceId%3D/a%20b/PT1H.json", "stkvlogseus", "resourceId=/a b/PT1H.json"},
		{"https://attacker.blob.core.windows.net/insights-logs-auditevent/" + path, "", ""},
		{"https://stkvlogseus.blob.core.windows.net.attacker.example/insights-logs-auditevent/" + path, "", ""},
		{"http://stkvlogseus.blob.core.windows.net/insights-logs-auditevent/" + path, "", ""},
		{"https://stkvlogseus.blob.core.windows.net/other-container/" + path, "", ""},
		{"https://stkvlogseus.blob.core.windows.net/insights-logs-auditevent/", "", ""},
		{"https://user@stkvlogseus.blob.core.windows.net/insights-logs-auditevent/" + path, "", ""},
		{"http://127.0.0.1:10000/devstoreaccount2/insights-logs-auditevent/" + path, "", ""},
		{"http://127.0.0.1:10001/devstoreaccount1/insights-logs-auditevent/" + path, "", ""},
		{"not a url", "", ""},
	}
	for _, tt := range tests {
		a, p, ok := s.BlobOf(tt.url, "insights-logs-auditevent")
		if ok != (tt.account != "") || a.Name != tt.account || p != tt.wantPath {
			t.Errorf("BlobOf(%q) = %q %q %v, want %q %q", tt.url, a.Name, p, ok, tt.account, tt.wantPath)
		}
	}
}

func TestAccountNameOf(t *testing.T) {
	tests := []struct {
		a    Account
		want string
	}{
		{Account{Name: "Logs1", BlobURL: "https://other.blob.core.windows.net"}, "logs1"},
		{Account{BlobURL: "https://stlogs.blob.core.windows.net"}, "stlogs"},
		{Account{BlobURL: "https://stlogs.privatelink.blob.core.windows.net"}, "stlogs"},
		{Account{BlobURL: "https://stlogs.z01.blob.storage.azure.net"}, "stlogs"},
		{Account{BlobURL: "https://stlogs.blob.core.chinacloudapi.cn"}, "stlogs"},
		{Account{TableURL: "https://idx.table.core.windows.net"}, "idx"},
		{Account{BlobURL: "http://127.0.0.1:10000/devstoreaccount1"}, "devstoreaccount1"},
		{Account{BlobURL: "http://localhost:10000/logstwo"}, "logstwo"},
		{Account{BlobURL: "https://logs.example.org"}, "logs.example.org"},
	}
	for _, tt := range tests {
		if got := AccountNameOf(tt.a); got != tt.want {
			t.Errorf("AccountNameOf(%+v) = %q, want %q", tt.a, got, tt.want)
		}
	}
}

func TestIsNameAndUnknownLogsSettings(t *testing.T) {
	for _, n := range []string{SettingLogsAccounts, SettingLogsRegion, "AuditLogsStorage_stkvlogseus", "AuditLogsStorage_stkvlogseus__blobServiceUri"} {
		if !IsName(n) {
			t.Errorf("IsName(%q) = false", n)
		}
	}
	for _, n := range []string{"AuditLogsStorage_X__blobServiceUri", "AuditLogsStorage_stkvlogseus__BlobServiceUri", "Other"} {
		if IsName(n) {
			t.Errorf("IsName(%q) = true", n)
		}
	}
	got := UnknownAccountSettings([]string{
		SettingLogsAccounts + "=stkvlogseus:eastus",
		"AuditLogsStorage_stkvlogseus__blobServiceUri=x",
		"AuditLogsStorage_stkvlogseus__BlobServiceUri=x",
		"AuditLogsStorage_notlisted__blobServiceUri=x",
		"AuditLogsStorage_notlisted=x",
	})
	want := []string{"AuditLogsStorage_notlisted", "AuditLogsStorage_notlisted__blobServiceUri", "AuditLogsStorage_stkvlogseus__BlobServiceUri"}
	if !slices.Equal(got, want) {
		t.Errorf("UnknownAccountSettings = %q, want %q", got, want)
	}
}
