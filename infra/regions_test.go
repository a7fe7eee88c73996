package infra

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kvaudit/kvaudit/internal/config"
)

// evaluated is what scripts/bicep-eval.js says main.bicep deploys.
type evaluated struct {
	Vars      map[string]json.RawMessage `json:"vars"`
	Resources map[string][]deployedItem  `json:"resources"`
	Modules   map[string][]deployedItem  `json:"modules"`
	Outputs   map[string]json.RawMessage `json:"outputs"`
}

type deployedItem struct {
	Name     string         `json:"name"`
	Location string         `json:"location"`
	Scope    any            `json:"scope"` // a resource group {name, subscriptionId}, or a resource's stand-in
	Params   map[string]any `json:"params"`
}

// evalBicep runs scripts/bicep-eval.js on infra/main.bicep with params; it
// skips where node or the grammar is missing (and fails in CI), as the
// lint does.
func evalBicep(t *testing.T, params map[string]any) evaluated {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("KVAUDIT_REQUIRE_AZURITE") == "1" || os.Getenv("CI") != "" {
			t.Fatal("node is required (Node 20, as for Azurite)")
		}
		t.Skip("node not installed")
	}
	if _, err := os.Stat("../node_modules/web-tree-sitter"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node_modules/web-tree-sitter missing: run npm ci")
		}
		t.Skip("node_modules/web-tree-sitter missing: run npm ci")
	}
	p := filepath.Join(t.TempDir(), "params.json")
	b, _ := json.Marshal(params)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "scripts/bicep-eval.js", "infra/main.bicep", p)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("bicep-eval: %v\n%s", err, stderr)
	}
	var ev evaluated
	if err := json.Unmarshal(out, &ev); err != nil {
		t.Fatalf("bicep-eval output: %v\n%s", err, out)
	}
	for name, v := range ev.Vars {
		if strings.Contains(string(v), `"$error"`) {
			t.Errorf("var %s does not evaluate: %s", name, v)
		}
	}
	for name, v := range ev.Outputs {
		if strings.Contains(string(v), `"$error"`) {
			t.Errorf("output %s does not evaluate: %s", name, v)
		}
	}
	return ev
}

func (ev evaluated) str(t *testing.T, name string) string {
	t.Helper()
	var s string
	raw, ok := ev.Outputs[name]
	if !ok {
		raw = ev.Vars[name]
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("%s is not a string: %s", name, raw)
	}
	return s
}

// azdEnv reads the values a hook set with `azd env set K=V`.
func azdEnv(calls string) map[string]string {
	env := map[string]string{}
	for _, line := range strings.Split(calls, "\n") {
		if kv, ok := strings.CutPrefix(line, "azd env set "); ok {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	return env
}

// storageID is the id bicep-eval gives an account in rg.
func storageID(rg, name string) string {
	return "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/" + rg + "/providers/Microsoft.Storage/storageAccounts/" + name
}

// One kvaudit for vaults in several regions and subscriptions (issue 17):
// the preprovision hook, against a stand-in az, reads each vault's region,
// the first logs account's, and an existing account named for one region
// (with its system topic); the template, evaluated on its own text with
// what the hook set, gives each vault exactly one diagnostic setting, in
// its own subscription and resource group, pointing at the logs account
// of its region — the first account, an existing one, or one it makes in
// that region — with a system topic, a read role and app settings per
// account that kvaudit's config loads.
func TestEveryVaultLogsToItsRegionsAccount(t *testing.T) {
	const (
		sub1, sub2 = "/subscriptions/11111111-0000-0000-0000-000000000001", "/subscriptions/22222222-0000-0000-0000-000000000002"
		neuID      = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-neu/providers/Microsoft.Storage/storageAccounts/stlogsneu"
	)
	kv := func(sub, rg, name string) string {
		return sub + "/resourceGroups/" + rg + "/providers/Microsoft.KeyVault/vaults/" + name
	}
	vaults := []struct {
		id, location string // "" location: az cannot read it
	}{
		{kv(sub1, "rg-kv", "kv-weu-1"), "westeurope"},
		{kv(sub2, "rg-b", "kv-weu-2"), "West Europe"},
		{kv(sub2, "rg-b", "kv-eus"), "eastus"},
		{kv(sub1, "rg-kv", "kv-neu"), "northeurope"},
		{kv(sub1, "rg-kv", "kv-neu-old"), "northeurope"},
		{kv(sub2, "rg-c", "kv-gone"), ""},
		{kv(sub2, "rg-c", "kv-eus-2"), "eastus"},
	}
	files := map[string]string{
		"locations":         flexList,
		"runtimes":          "1.0\n",
		"account-stlogs":    "westeurope\n",
		"account-stlogsneu": neuID + "\tnortheurope\trg-neu\n",
		"topics":            strings.ToUpper(neuID) + "\tevgt-neu\trg-topics\n" + otherID + "\tevgt-other\trg-logs\n",
		// kv-neu-old already sends AuditEvent to its region's (named) account.
		"kv-neu-old.tsv": "old\t" + neuID + "\t1\n",
		// kv-weu-2 sends it to another region's account: not its own.
		"kv-weu-2.tsv": "elsewhere\t" + neuID + "\t1\n",
	}
	var ids []string
	for _, v := range vaults {
		ids = append(ids, v.id)
		if v.location != "" {
			files[v.id[strings.LastIndex(v.id, "/")+1:]+".location"] = v.location + "\n"
		}
	}
	env := map[string]string{
		"AZURE_LOCATION":                 "westeurope",
		"KVAUDIT_KEY_VAULT_IDS":          strings.Join(ids, ","),
		"KVAUDIT_LOGS_STORAGE_ACCOUNT":   "stlogs",
		"KVAUDIT_REGIONAL_LOGS_ACCOUNTS": "North Europe=stlogsneu",
		"AUDIT_DIAGNOSTIC_SETTING_NAME":  ownName,
	}
	r := runPreprovision(t, files, env, true)
	if r.err != nil {
		t.Fatalf("preprovision: %v\n%s\n%s", r.err, r.out, r.calls)
	}
	set := azdEnv(r.calls)
	if got, want := set["KVAUDIT_VAULT_REGIONS"], "westeurope,westeurope,eastus,northeurope,northeurope,,eastus"; got != want {
		t.Errorf("KVAUDIT_VAULT_REGIONS = %q, want %q", got, want)
	}
	if got, want := set["KVAUDIT_LOGS_REGIONS"], "eastus||||,northeurope|stlogsneu|rg-neu|evgt-neu|rg-topics"; got != want {
		t.Errorf("KVAUDIT_LOGS_REGIONS = %q, want %q", got, want)
	}
	if set["KVAUDIT_LOGS_STORAGE_LOCATION"] != "westeurope" || set["KVAUDIT_VAULTS_ALREADY_LOGGING"] != kv(sub1, "rg-kv", "kv-neu-old") {
		t.Errorf("hook set %v", set)
	}
	if !strings.Contains(r.out, "cannot read the region of "+kv(sub2, "rg-c", "kv-gone")) {
		t.Errorf("no warning for the vault without a region:\n%s", r.out)
	}

	ev := evalBicep(t, map[string]any{
		"environmentName":        "prod",
		"location":               "westeurope",
		"keyVaultIds":            env["KVAUDIT_KEY_VAULT_IDS"],
		"logsStorageAccountName": "stlogs",
		"logsStorageLocation":    set["KVAUDIT_LOGS_STORAGE_LOCATION"],
		"keyVaultRegions":        set["KVAUDIT_VAULT_REGIONS"],
		"logsRegions":            set["KVAUDIT_LOGS_REGIONS"],
		"vaultsAlreadyLogging":   set["KVAUDIT_VAULTS_ALREADY_LOGGING"],
		"$resourceGroup":         "rg-app",
	})

	// The account the template makes for East US.
	var eus string
	for _, a := range ev.Resources["regionalLogsStorage"] {
		if a.Location != "eastus" || !regexp.MustCompile(`^stkvlog[a-z0-9]{13}$`).MatchString(a.Name) {
			t.Errorf("new regional logs account %+v, want one in eastus named stkvlog…", a)
		}
		eus = a.Name
	}
	if len(ev.Resources["regionalLogsStorage"]) != 1 {
		t.Fatalf("new regional accounts %+v, want East US's alone (North Europe's is named, West Europe's is the first)", ev.Resources["regionalLogsStorage"])
	}
	accountOf := map[string]string{
		"westeurope":  storageID("rg-app", "stlogs"),
		"eastus":      storageID("rg-app", eus),
		"northeurope": neuID,
	}

	// One diagnostic setting per vault, to its region's account.
	got := map[string]string{}
	for _, d := range ev.Modules["vaultDiagnostics"] {
		name, _ := d.Params["vaultName"].(string)
		if _, dup := got[name]; dup {
			t.Errorf("vault %s has two diagnostic settings", name)
		}
		got[name], _ = d.Params["storageAccountId"].(string)
		var vault string
		for _, v := range vaults {
			if strings.HasSuffix(v.id, "/"+name) {
				vault = v.id
			}
		}
		parts := strings.Split(vault, "/")
		if scope(d, "subscriptionId") != parts[2] || scope(d, "name") != parts[4] {
			t.Errorf("vault %s: setting deployed in %v, want its own subscription %s and group %s", name, d.Scope, parts[2], parts[4])
		}
		if d.Params["settingName"] != ev.str(t, "diagnosticSettingName") {
			t.Errorf("vault %s: setting named %v", name, d.Params["settingName"])
		}
	}
	want := map[string]string{
		"kv-weu-1": accountOf["westeurope"],
		"kv-weu-2": accountOf["westeurope"],
		"kv-eus":   accountOf["eastus"],
		"kv-eus-2": accountOf["eastus"],
		"kv-neu":   accountOf["northeurope"],
		// kv-neu-old logs there already; kv-gone has no known region.
	}
	for name, acct := range want {
		if got[name] != acct {
			t.Errorf("vault %s logs to %q, want its region's account %q", name, got[name], acct)
		}
	}
	if len(got) != len(want) {
		t.Errorf("diagnostic settings for %v, want %v", keys(got), keys(want))
	}

	// Each other region's account: its topic in its region (North Europe's
	// existing one kept), the read role.
	topics := map[string]deployedItem{}
	for _, m := range ev.Modules["regionalLogsEvents"] {
		topics[m.Params["storageAccountName"].(string)] = m
	}
	if m := topics[eus]; m.Params["location"] != "eastus" || m.Params["existingTopicName"] != "" || scope(m, "name") != "rg-app" {
		t.Errorf("East US topic %+v", m)
	}
	if m := topics["stlogsneu"]; m.Params["location"] != "northeurope" || m.Params["existingTopicName"] != "evgt-neu" || scope(m, "name") != "rg-neu" {
		t.Errorf("North Europe topic %+v", m)
	}
	var roled []string
	for _, m := range ev.Modules["regionalLogsRoles"] {
		roled = append(roled, scope(m, "name")+"/"+m.Params["storageAccountName"].(string))
		if ids, _ := m.Params["roleDefinitionIds"].([]any); len(ids) != 1 || ids[0] != wantRolesByName("storageBlobDataReader") {
			t.Errorf("roles on %v: %v, want Storage Blob Data Reader", m.Params["storageAccountName"], ids)
		}
	}
	sort.Strings(roled)
	if !slices.Equal(roled, []string{"rg-app/" + eus, "rg-neu/stlogsneu"}) {
		t.Errorf("regional roles on %v", roled)
	}
	// The postdeploy hook subscribes each account's topic.
	var topicAccounts []string
	for _, e := range strings.Split(ev.str(t, "EVENTGRID_TOPICS"), ",") {
		f := strings.Split(e, "|")
		if len(f) != 3 {
			t.Fatalf("EVENTGRID_TOPICS entry %q", e)
		}
		topicAccounts = append(topicAccounts, f[2])
	}
	if !slices.Equal(topicAccounts, []string{accountOf["westeurope"], accountOf["eastus"], accountOf["northeurope"]}) {
		t.Errorf("EVENTGRID_TOPICS accounts %v", topicAccounts)
	}
	if !strings.Contains(ev.str(t, "EVENTGRID_TOPICS"), "|rg-topics|"+neuID) {
		t.Errorf("North Europe's existing topic is not in its own resource group: %s", ev.str(t, "EVENTGRID_TOPICS"))
	}

	// The app settings, stand-ins filled in, load in kvaudit's config and
	// name every account with its region.
	settings := map[string]string{}
	for _, v := range []string{"appSettings", "regionalAppSettings"} {
		var m map[string]string
		if err := json.Unmarshal(ev.Vars[v], &m); err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		for k, val := range m {
			if !config.IsName(k) && !slices.Contains(config.HostSettings, k) {
				t.Errorf("app setting %s is not one kvaudit or the host reads", k)
			}
			val = strings.ReplaceAll(val, "<identity.properties.clientId>", "00000000-0000-0000-0000-0000000000c1")
			val = regexp.MustCompile(`<[^>]+>`).ReplaceAllString(val, "standin")
			settings[k] = val
		}
	}
	s, err := config.FromLookup(func(k string) (string, bool) { v, ok := settings[k]; return v, ok })
	if err != nil {
		t.Fatalf("the template's settings do not load: %v", err)
	}
	var loaded []string
	for _, l := range s.LogsAccounts {
		loaded = append(loaded, l.Name+":"+l.Region)
		if !l.Account.Identity || l.Account.Credential != "managedidentity" || l.Account.ClientID == "" {
			t.Errorf("logs account %s is not read by the user-assigned identity: %+v", l.Name, l.Account)
		}
	}
	if !slices.Equal(loaded, []string{"stlogs:westeurope", eus + ":eastus", "stlogsneu:northeurope"}) {
		t.Errorf("kvaudit would read the logs accounts %v", loaded)
	}
}

// scope is a field of the resource group an item is deployed in.
func scope(d deployedItem, field string) string {
	m, _ := d.Scope.(map[string]any)
	s, _ := m[field].(string)
	return s
}

// wantRolesByName is wantRoles' GUID of a role name.
func wantRolesByName(name string) string {
	for g, n := range wantRoles {
		if n == name {
			return g
		}
	}
	return ""
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// A deployment in one region, as before issue 17, deploys as before: no
// regional account, every vault to the first account, AuditLogsAccounts
// empty.
func TestOneRegionDeploysAsBefore(t *testing.T) {
	ids := "/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/kv1,/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/kv2"
	ev := evalBicep(t, map[string]any{
		"environmentName": "prod", "location": "West Europe", "keyVaultIds": ids,
		"keyVaultRegions": "westeurope,westeurope", "logsRegions": "", "$resourceGroup": "rg-app",
	})
	if n := len(ev.Resources["regionalLogsStorage"]) + len(ev.Modules["regionalLogsEvents"]) + len(ev.Modules["regionalLogsRoles"]); n != 0 {
		t.Errorf("%d regional resources in one region", n)
	}
	first := storageID("rg-app", ev.str(t, "AUDIT_LOGS_STORAGE_ACCOUNT"))
	if len(ev.Modules["vaultDiagnostics"]) != 2 {
		t.Fatalf("diagnostic settings %+v", ev.Modules["vaultDiagnostics"])
	}
	for _, d := range ev.Modules["vaultDiagnostics"] {
		if d.Params["storageAccountId"] != first {
			t.Errorf("vault %v logs to %v, want the first account %s", d.Params["vaultName"], d.Params["storageAccountId"], first)
		}
	}
	var settings map[string]string
	if err := json.Unmarshal(ev.Vars["appSettings"], &settings); err != nil {
		t.Fatal(err)
	}
	if settings[config.SettingLogsAccounts] != "" || settings[config.SettingLogsRegion] != "westeurope" {
		t.Errorf("AuditLogsAccounts %q, AuditLogsRegion %q", settings[config.SettingLogsAccounts], settings[config.SettingLogsRegion])
	}
	// An entry for the first account's own region is left out too.
	ev = evalBicep(t, map[string]any{
		"environmentName": "prod", "location": "westeurope", "keyVaultIds": ids,
		"keyVaultRegions": "westeurope,westeurope", "logsRegions": "westeurope||||", "$resourceGroup": "rg-app",
	})
	if len(ev.Resources["regionalLogsStorage"]) != 0 {
		t.Errorf("a second account in the first account's region: %+v", ev.Resources["regionalLogsStorage"])
	}
}
