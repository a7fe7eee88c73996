package infra

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fakeAz is a stand-in az (and azd) for the preprovision hook: it records
// each call in $AZ_LOG and answers from files in $AZ_DIR:
//
//	locations / locations.fail      list-flexconsumption-locations
//	runtimes / runtimes.fail        list-flexconsumption-runtimes
//	<vault>.tsv / <vault>.fail      monitor diagnostic-settings list --resource …/<vault>
//	<vault>.location                resource show --ids …/<vault> (none: it fails)
//	account-<name>                  storage account show --name <name> (none: it fails)
//	topics                          eventgrid system-topic list
//
// A .tsv file holds what az prints with the hook's --query and -o tsv.
const fakeAz = `#!/bin/sh
echo "az $*" >> "$AZ_LOG"
answer() { if [ -f "$AZ_DIR/$1.fail" ]; then echo "az: failed" >&2; exit 2; fi; [ ! -f "$AZ_DIR/$1" ] || cat "$AZ_DIR/$1"; }
must() { if [ -f "$AZ_DIR/$1" ]; then cat "$AZ_DIR/$1"; else echo "az: not found" >&2; exit 3; fi; }
arg() { prev=""; for a in "$@"; do [ "$prev" = "$FLAG" ] && printf '%s' "$a"; prev="$a"; done; }
case "$*" in
"functionapp list-flexconsumption-locations"*) answer locations ;;
"functionapp list-flexconsumption-runtimes"*) answer runtimes ;;
"monitor diagnostic-settings list"*)
  res=$(FLAG=--resource arg "$@")
  answer "${res##*/}.tsv" ;;
"resource show"*)
  res=$(FLAG=--ids arg "$@")
  must "${res##*/}.location" ;;
"storage account show"*)
  name=$(FLAG=--name arg "$@")
  must "account-$name" ;;
"eventgrid system-topic list"*) answer topics ;;
*) echo "fake az: unexpected call: $*" >&2; exit 9 ;;
esac
`

const fakeAzd = `#!/bin/sh
echo "azd $*" >> "$AZ_LOG"
`

type hookRun struct {
	out   string // stdout and stderr
	calls string // az and azd calls, one a line
	err   error
}

// runPreprovision runs hooks/preprovision.sh with dash (sh) from a folder
// that is not the repository's, against the fake az, with env set.
func runPreprovision(t *testing.T, files map[string]string, env map[string]string, withAzd bool) hookRun {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	script, err := filepath.Abs("../hooks/preprovision.sh")
	if err != nil {
		t.Fatal(err)
	}
	bin, data := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "az"), []byte(fakeAz), 0o755); err != nil {
		t.Fatal(err)
	}
	if withAzd {
		if err := os.WriteFile(filepath.Join(bin, "azd"), []byte(fakeAzd), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(data, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log := filepath.Join(data, "calls.log")
	cmd := exec.Command(sh, script)
	cmd.Dir = t.TempDir() // not the repository: the hook's paths must not depend on it
	cmd.Env = []string{"PATH=" + bin + string(os.PathListSeparator) + "/usr/bin:/bin", "AZ_LOG=" + log, "AZ_DIR=" + data}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	calls, _ := os.ReadFile(log)
	return hookRun{out: string(out), calls: string(calls), err: err}
}

const (
	subID    = "/subscriptions/00000000-0000-0000-0000-000000000001"
	logsID   = subID + "/resourceGroups/rg-logs/providers/Microsoft.Storage/storageAccounts/stlogs"
	otherID  = subID + "/resourceGroups/rg-logs/providers/Microsoft.Storage/storageAccounts/stother"
	ownName  = "kvaudit-abcdefabcdefa"
	flexList = "eastus\nwesteurope\nnorthcentralus(stage)\n"
)

func vault(name string) string {
	return subID + "/resourceGroups/rg-kv/providers/Microsoft.KeyVault/vaults/" + name
}

// The preprovision hook (issue 16, item 4 and the region check): a vault
// that already sends AuditEvent to the chosen logs account through a
// setting of its own is passed to the template to skip; every other vault
// keeps its kvaudit setting; nothing about one vault stops the deployment;
// a region without Flex Consumption or its custom runtime stops it early.
func TestPreprovisionHook(t *testing.T) {
	all := strings.Join([]string{vault("kv-legacy"), vault("kv-other"), vault("kv-own"), vault("kv-denied"), vault("kv-alllogs"), vault("kv-metrics")}, ", ")
	vaultFiles := map[string]string{
		"locations": flexList,
		"runtimes":  "1.0\n",
		// Every vault in the logs account's region.
		"kv-legacy.location": "westeurope\n", "kv-other.location": "westeurope\n", "kv-own.location": "westeurope\n",
		"kv-denied.location": "westeurope\n", "kv-alllogs.location": "westeurope\n", "kv-metrics.location": "westeurope\n",
		"account-stlogs": "westeurope\n",
		// AuditEvent to the logs account (its id in other letter case): reuse.
		"kv-legacy.tsv": "legacy\t" + strings.ToUpper(logsID) + "\t1\n",
		// To another account: kvaudit still needs its own.
		"kv-other.tsv": "siem\t" + otherID + "\t1\n",
		// kvaudit's own setting from a previous provision: the template keeps owning it.
		"kv-own.tsv": ownName + "\t" + logsID + "\t1\n",
		// Cannot be listed: kept, with a warning.
		"kv-denied.tsv.fail": "",
		// The allLogs group holds AuditEvent (the hook's query counts it): reuse.
		"kv-alllogs.tsv": "everything\t" + logsID + "\t1\nlaw\t\t1\n",
		// Only metrics to the logs account: no AuditEvent, kvaudit's is needed.
		"kv-metrics.tsv": "metrics\t" + logsID + "\t0\n",
	}
	env := map[string]string{
		"AZURE_LOCATION":                "West Europe",
		"KVAUDIT_KEY_VAULT_IDS":         all,
		"KVAUDIT_LOGS_STORAGE_ACCOUNT":  "stlogs",
		"AUDIT_DIAGNOSTIC_SETTING_NAME": ownName,
	}
	with := func(m map[string]string, k, v string) map[string]string {
		c := map[string]string{}
		for a, b := range m {
			c[a] = b
		}
		if v == "\x00" {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	cases := []struct {
		name      string
		files     map[string]string
		env       map[string]string
		noAzd     bool
		fail      string   // "" for success; else a phrase of the error
		skipped   []string // vault names passed to the template, in order
		wantOut   []string
		wantCalls []string
		noCalls   []string
	}{
		{name: "vaults sorted out", files: vaultFiles, env: env,
			skipped: []string{"kv-legacy", "kv-alllogs"},
			wantOut: []string{"West Europe offers Flex Consumption with the custom runtime (1.0)", "kv-legacy already sends AuditEvent to stlogs (diagnostic setting legacy)", "could not list the diagnostic settings of " + vault("kv-denied")},
			wantCalls: []string{
				"az functionapp list-flexconsumption-runtimes --location westeurope --runtime custom --query [].version --output tsv",
				"az monitor diagnostic-settings list --resource " + vault("kv-metrics") + " --query ",
			}},
		{name: "the logs account a previous provision created", files: vaultFiles,
			env:     with(with(env, "KVAUDIT_LOGS_STORAGE_ACCOUNT", "\x00"), "AUDIT_LOGS_STORAGE_ACCOUNT", "stlogs"),
			skipped: []string{"kv-legacy", "kv-alllogs"}},
		{name: "a new logs account: nothing to list", files: vaultFiles, env: with(env, "KVAUDIT_LOGS_STORAGE_ACCOUNT", "\x00"),
			skipped: []string{}, noCalls: []string{"diagnostic-settings"}},
		{name: "no vaults", files: vaultFiles, env: with(env, "KVAUDIT_KEY_VAULT_IDS", "\x00"), skipped: []string{}},
		{name: "without azd it prints the value", files: vaultFiles, env: env, noAzd: true,
			wantOut: []string{"vaultsAlreadyLogging='" + vault("kv-legacy") + "," + vault("kv-alllogs") + "'", "pass keyVaultRegions='westeurope,"}},
		{name: "a named logs account that cannot be read", files: with(vaultFiles, "account-stlogs", "\x00"), env: env,
			fail: "cannot read the region of the logs account stlogs", noCalls: []string{"azd env set"}},
		{name: "region without Flex Consumption", files: vaultFiles, env: with(env, "AZURE_LOCATION", "japanwest"),
			fail: "Flex Consumption is not offered in japanwest", wantOut: []string{"  eastus", "azd env set AZURE_LOCATION"}, noCalls: []string{"diagnostic-settings", "azd env set"}},
		{name: "region without the custom runtime", files: with(vaultFiles, "runtimes", ""), env: env,
			fail: "does not offer the custom runtime", noCalls: []string{"azd env set"}},
		{name: "Azure CLI cannot list regions: warn, go on", files: with(with(vaultFiles, "locations", "\x00"), "locations.fail", ""), env: env,
			skipped: []string{"kv-legacy", "kv-alllogs"}, wantOut: []string{"warning: could not list Flex Consumption regions"}, noCalls: []string{"list-flexconsumption-runtimes"}},
		{name: "Azure CLI cannot list runtimes: warn, go on", files: with(vaultFiles, "runtimes.fail", ""), env: env,
			skipped: []string{"kv-legacy", "kv-alllogs"}, wantOut: []string{"warning: could not list Flex Consumption runtimes"}},
		{name: "no region yet", files: vaultFiles, env: with(env, "AZURE_LOCATION", "\x00"),
			skipped: []string{"kv-legacy", "kv-alllogs"}, wantOut: []string{"region check is skipped"}, noCalls: []string{"flexconsumption"}},
		{name: "not a vault id", files: vaultFiles, env: with(env, "KVAUDIT_KEY_VAULT_IDS", vault("kv-a")+",/subscriptions/x/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/s"),
			fail: "not a Key Vault resource id", noCalls: []string{"azd env set"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runPreprovision(t, c.files, c.env, !c.noAzd)
			if c.fail != "" {
				if r.err == nil || !strings.Contains(r.out, c.fail) {
					t.Fatalf("want failure %q, got %v:\n%s", c.fail, r.err, r.out)
				}
			} else if r.err != nil {
				t.Fatalf("failed: %v\n%s\ncalls:\n%s", r.err, r.out, r.calls)
			}
			for _, w := range c.wantOut {
				if !strings.Contains(r.out, w) {
					t.Errorf("output lacks %q:\n%s", w, r.out)
				}
			}
			for _, w := range c.wantCalls {
				if !strings.Contains(r.calls, w) {
					t.Errorf("calls lack %q:\n%s", w, r.calls)
				}
			}
			for _, w := range c.noCalls {
				if strings.Contains(r.calls, w) {
					t.Errorf("calls include %q:\n%s", w, r.calls)
				}
			}
			if c.skipped != nil {
				var ids []string
				for _, v := range c.skipped {
					ids = append(ids, vault(v))
				}
				want := "azd env set KVAUDIT_VAULTS_ALREADY_LOGGING=" + strings.Join(ids, ",") + "\n"
				for _, also := range []string{"azd env set KVAUDIT_VAULT_REGIONS=", "azd env set KVAUDIT_LOGS_STORAGE_LOCATION=", "azd env set KVAUDIT_LOGS_REGIONS="} {
					if !strings.Contains(r.calls, also) {
						t.Errorf("want %q in calls:\n%s", also, r.calls)
					}
				}
				if !strings.Contains(r.calls, want) {
					t.Errorf("want %q in calls:\n%s\noutput:\n%s", want, r.calls, r.out)
				}
			}
		})
	}
}

// The two preprovision hooks ask az the same question, and the template
// takes what they find.
func TestPreprovisionHooksAgree(t *testing.T) {
	queryRE := regexp.MustCompile(`(?m)^\$?(?:QUERY|query) = ?'([^']+)'$|^QUERY='([^']+)'$`)
	var queries []string
	for _, hook := range []string{"hooks/preprovision.sh", "hooks/preprovision.ps1"} {
		m := queryRE.FindStringSubmatch(read(t, hook))
		if m == nil {
			t.Fatalf("%s: no query", hook)
		}
		queries = append(queries, m[1]+m[2])
		src := read(t, hook)
		for _, want := range []string{
			"az functionapp list-flexconsumption-locations",
			"az functionapp list-flexconsumption-runtimes --location",
			"--runtime custom",
			"az monitor diagnostic-settings list --resource",
			"KVAUDIT_VAULTS_ALREADY_LOGGING=", "KVAUDIT_VAULT_REGIONS=", "KVAUDIT_LOGS_STORAGE_LOCATION=", "KVAUDIT_LOGS_REGIONS=",
			"KVAUDIT_KEY_VAULT_IDS", "KVAUDIT_LOGS_STORAGE_ACCOUNT", "AUDIT_LOGS_STORAGE_ACCOUNT", "AUDIT_DIAGNOSTIC_SETTING_NAME",
			"KVAUDIT_REGIONAL_LOGS_ACCOUNTS", "AUDIT_LOGS_ACCOUNTS", "KVAUDIT_LOGS_RESOURCE_GROUP",
			"az resource show --ids", "--query location", "az storage account show --name", "az eventgrid system-topic list",
		} {
			if !strings.Contains(src, want) {
				t.Errorf("%s lacks %q", hook, want)
			}
		}
	}
	if queries[0] != queries[1] {
		t.Errorf("the hooks' queries differ:\n%s\n%s", queries[0], queries[1])
	}
	for _, want := range []string{"AuditEvent", "audit", "allLogs", "enabled", "storageAccountId", "(value || @)"} {
		if !strings.Contains(queries[0], want) {
			t.Errorf("query lacks %s: %s", want, queries[0])
		}
	}
	params := read(t, "infra/main.parameters.json")
	for param, env := range map[string]string{
		"vaultsAlreadyLogging": "KVAUDIT_VAULTS_ALREADY_LOGGING",
		"keyVaultRegions":      "KVAUDIT_VAULT_REGIONS",
		"logsStorageLocation":  "KVAUDIT_LOGS_STORAGE_LOCATION",
		"logsRegions":          "KVAUDIT_LOGS_REGIONS",
	} {
		if !strings.Contains(params, `"`+param+`": {`) || !strings.Contains(params, `"${`+env+`}"`) {
			t.Errorf("main.parameters.json does not pass %s as %s", env, param)
		}
	}
	src := read(t, "infra/main.bicep")
	if !strings.Contains(block(t, src, "module vaultDiagnostics "), "in diagnosticVaults:") ||
		!strings.Contains(src, "var diagnosticVaults = filter(vaults, v => !contains(alreadyLogging, toLower(v.id)) && ") {
		t.Error("main.bicep does not leave out the vaults already logging")
	}
	// The hook recognises kvaudit's own setting by the name the template outputs.
	if !strings.Contains(src, "\noutput AUDIT_DIAGNOSTIC_SETTING_NAME string = diagnosticSettingName\n") ||
		!strings.Contains(src, "\noutput AUDIT_LOGS_STORAGE_ACCOUNT string = logsAccountName\n") ||
		!strings.Contains(src, "\noutput AUDIT_LOGS_ACCOUNTS string = ") {
		t.Error("main.bicep does not output the names the preprovision hook reads")
	}
}
