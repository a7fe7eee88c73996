package infra

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// lintBicep runs scripts/lint-bicep.js from the repository root; it skips
// the test where node or the grammar is missing (and fails in CI).
func lintBicep(t *testing.T, args ...string) (string, error) {
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
	cmd := exec.Command(node, append([]string{"scripts/lint-bicep.js"}, args...)...)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// writeFiles writes name → content into a new folder and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The rule check over the syntax tree finds what Bicep reports as BCP120:
// a property ARM needs when the deployment starts that reads a value known
// only while deploying. Item 1 of issue 16 is the first case; the others
// are the same mistake in its other shapes, and the last ones what the
// rule must let through (or it would only be noise).
func TestBicepDeployTimeConstants(t *testing.T) {
	module := "param x string\nparam y string = ''\noutput o string = x\n"
	head := "param loc string\nparam names array = []\n" +
		"resource ex 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {\n  name: 'logs'\n}\n" +
		"resource nw 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'new'\n  location: loc\n  kind: 'StorageV2'\n  sku: {\n    name: 'Standard_LRS'\n  }\n}\n" +
		"module m 'm.bicep' = {\n  name: 'm'\n  params: {\n    x: loc\n  }\n}\n"
	topic := func(prop, expr string) string {
		return head + "resource t 'Microsoft.EventGrid/systemTopics@2022-06-15' = {\n  name: 'topic'\n  location: loc\n  " + prop + ": " + expr + "\n  properties: {\n    source: ex.id\n  }\n}\n"
	}
	// item 1, exactly as main had it: the module's own file.
	item1 := strings.Replace(read(t, "infra/modules/logs-events.bicep"), "location: location\n", "location: account.location\n", 1)
	if item1 == read(t, "infra/modules/logs-events.bicep") {
		t.Fatal("logs-events.bicep no longer sets location: location")
	}
	cases := []struct {
		name string
		src  string
		want string // "" for no finding
	}{
		{"item 1: existing resource's location as a resource's location", item1, "location of resource topic must be known when the deployment starts (BCP120): account.location"},
		{"existing resource's properties in tags", topic("tags", "{\n    endpoint: ex.properties.primaryEndpoints.blob\n  }"), "tags of resource t must be known when the deployment starts (BCP120): ex.properties"},
		{"existing resource's sku in sku", topic("sku", "ex.sku"), "sku of resource t must be known when the deployment starts (BCP120): ex.sku"},
		{"existing resource's location through a string index", topic("kind", "ex['location']"), "kind of resource t must be known when the deployment starts (BCP120): ex.location"},
		{"new resource's location (not readable either)", topic("kind", "nw.location"), "kind of resource t must be known when the deployment starts (BCP120): nw.location"},
		{"module output in a resource's name", head + "resource t 'Microsoft.EventGrid/systemTopics@2022-06-15' = {\n  name: m.outputs.o\n  location: loc\n}\n", "name of resource t must be known when the deployment starts (BCP120): m.outputs"},
		{"module output in a module's name", head + "module m2 'm.bicep' = {\n  name: 'x-${m.outputs.o}'\n  params: {\n    x: 'a'\n  }\n}\n", "name of module m2 must be known when the deployment starts (BCP120): m.outputs"},
		{"module output in a module's scope", head + "module m2 'm.bicep' = {\n  name: 'm2'\n  scope: resourceGroup(m.outputs.o)\n  params: {\n    x: 'a'\n  }\n}\n", "scope of module m2 must be known when the deployment starts (BCP120): m.outputs"},
		{"through variables", head + "var a = ex.properties.primaryEndpoints.blob\nvar b = 'x-${a}'\n" + "resource t 'Microsoft.EventGrid/systemTopics@2022-06-15' = {\n  name: b\n  location: loc\n}\n", "name of resource t must be known when the deployment starts (BCP120): variable b: variable a: ex.properties"},
		{"in a condition", head + "resource t 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (ex.properties.isHnsEnabled) {\n  name: 'topic'\n  location: loc\n}\n", "the condition of resource t must be known when the deployment starts (BCP120): ex.properties"},
		{"in a loop", head + "resource t 'Microsoft.EventGrid/systemTopics@2022-06-15' = [for n in ex.properties.networkAcls.ipRules: {\n  name: 'topic'\n  location: loc\n}]\n", "the loop of resource t must be known when the deployment starts (BCP120): ex.properties"},
		{"listKeys", topic("tags", "{\n    k: nw.listKeys().keys[0].value\n  }"), "tags of resource t must be known when the deployment starts (BCP120): nw.listKeys"},
		{"reference()", topic("tags", "reference(ex.id).tags"), "reference() is evaluated while deploying"},
		{"existing resource named from a module output, as a scope", head + "resource rt 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {\n  name: m.outputs.o\n}\n" +
			"resource ra 'Microsoft.Authorization/roleAssignments@2022-04-01' = {\n  name: guid('a')\n  scope: rt\n  properties: {\n    principalId: 'p'\n    roleDefinitionId: 'r'\n  }\n}\n", "scope of resource ra must be known when the deployment starts (BCP120): existing resource rt"},
		{"nested child resource", head + "resource p 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'p'\n  location: loc\n  kind: 'StorageV2'\n  sku: {\n    name: 'Standard_LRS'\n  }\n\n  resource b 'blobServices' = {\n    name: ex.properties.primaryLocation\n  }\n}\n", "name of resource b must be known when the deployment starts (BCP120): ex.properties"},

		{"allowed: id, name, type, apiVersion, params, loop values", head + "resource t 'Microsoft.EventGrid/systemTopics@2022-06-15' = [for (n, i) in names: {\n  name: '${n}-${i}-${ex.name}-${uniqueString(ex.id, nw.id)}'\n  location: loc\n  tags: {\n    t: ex.type\n    v: ex.apiVersion\n    m: m.name\n  }\n}]\n", ""},
		{"allowed: runtime values in properties and module params", head + "module m2 'm.bicep' = {\n  name: 'm2'\n  params: {\n    x: ex.location\n    y: m.outputs.o\n  }\n}\n" + topic("tags", "{\n    a: 'b'\n  }"), ""},
		{"allowed: an existing resource's own name from a module output", head + "resource rt 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {\n  name: m.outputs.o\n}\noutput loc string = rt.location\n", ""},
		{"allowed: a lambda's own names", head + "var ids = filter(map(names, n => toLower(n)), n => !empty(n))\nresource t 'Microsoft.EventGrid/systemTopics@2022-06-15' = [for id in ids: {\n  name: id\n  location: loc\n}]\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"a.bicep": c.src, "m.bicep": module})
			out, err := lintBicep(t, filepath.Join(dir, "a.bicep"))
			if c.want == "" {
				if err != nil {
					t.Fatalf("flagged what Bicep accepts (%v):\n%s", err, out)
				}
				return
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("not flagged (%v):\n%s", err, out)
			}
			if !strings.Contains(out, c.want) {
				t.Fatalf("flagged, but not with %q:\n%s", c.want, out)
			}
		})
	}
}

// Module declarations agree with the module files: no parameter a module
// does not declare, none it requires left out, no output it lacks read.
func TestBicepModuleParams(t *testing.T) {
	module := "param x string\nparam y string = ''\noutput o string = x\n"
	cases := []struct{ name, src, want string }{
		{"unknown parameter", "module m 'm.bicep' = {\n  name: 'm'\n  params: {\n    x: 'a'\n    z: 'b'\n  }\n}\n", "module m: m.bicep declares no parameter z"},
		{"required parameter missing", "module m 'm.bicep' = {\n  name: 'm'\n  params: {\n    y: 'a'\n  }\n}\n", "module m: required parameter x of m.bicep is not given"},
		{"unknown output", "module m 'm.bicep' = {\n  name: 'm'\n  params: {\n    x: 'a'\n  }\n}\noutput p string = m.outputs.nope\n", "module m has no output nope"},
		{"missing module file", "module m 'gone.bicep' = {\n  name: 'm'\n}\n", "gone.bicep does not exist"},
		{"fine", "module m 'm.bicep' = {\n  name: 'm'\n  params: {\n    x: 'a'\n  }\n}\noutput p string = m.outputs.o\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"a.bicep": c.src, "m.bicep": module})
			out, err := lintBicep(t, filepath.Join(dir, "a.bicep"))
			if c.want == "" {
				if err != nil {
					t.Fatalf("flagged (%v):\n%s", err, out)
				}
				return
			}
			if err == nil || !strings.Contains(out, c.want) {
				t.Fatalf("want %q (%v):\n%s", c.want, err, out)
			}
		})
	}
}

// declaration is one resource or module of infra/, as lint-bicep.js
// --declarations reports it.
type declaration struct {
	File       string   `json:"file"`
	Line       int      `json:"line"`
	Kind       string   `json:"kind"`
	Symbol     string   `json:"symbol"`
	Type       string   `json:"type"`
	APIVersion string   `json:"apiVersion"`
	Existing   bool     `json:"existing"`
	Path       string   `json:"path"`
	Properties []string `json:"properties"`
}

func declarations(t *testing.T) []declaration {
	t.Helper()
	out, err := lintBicep(t, "--declarations", "infra")
	if err != nil {
		t.Fatalf("lint-bicep --declarations: %v\n%s", err, out)
	}
	var ds []declaration
	if err := json.Unmarshal([]byte(out), &ds); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(ds) == 0 {
		t.Fatal("no declarations in infra/")
	}
	return ds
}

// confirmed is a resource type at an API version whose properties were
// checked against Bicep's own type library (Azure/bicep-types-az,
// generated/<provider>/<namespace>/<version>/types.json, the types the
// compiler loads; commit 1f896de2 of 2026-08-20), which Microsoft's
// template reference at learn.microsoft.com/azure/templates/<namespace>/
// <version>/<type> is generated from. props are the property paths the
// template may write: "a.b" exactly, "a.*" anything under a (free-form
// maps: tags, app settings, identity ids). Bicep's own properties (name,
// scope, parent, dependsOn) need no listing.
type confirmed struct {
	typ, apiVersion string
	props           []string
	source          string
}

var confirmedTypes = []confirmed{
	{"Microsoft.ManagedIdentity/userAssignedIdentities", "2023-01-31",
		[]string{"location", "tags.*"},
		"bicep-types-az generated/msi/microsoft.managedidentity/2023-01-31; learn.microsoft.com/azure/templates/microsoft.managedidentity/2023-01-31/userassignedidentities"},
	{"Microsoft.Storage/storageAccounts", "2023-05-01",
		[]string{"location", "tags.*", "kind", "sku.name", "properties.minimumTlsVersion", "properties.supportsHttpsTrafficOnly", "properties.allowBlobPublicAccess", "properties.allowSharedKeyAccess"},
		"bicep-types-az generated/storage/microsoft.storage/2023-05-01; learn.microsoft.com/azure/templates/microsoft.storage/2023-05-01/storageaccounts"},
	{"Microsoft.Storage/storageAccounts/blobServices", "2023-05-01", nil,
		"bicep-types-az generated/storage/microsoft.storage/2023-05-01; learn.microsoft.com/azure/templates/microsoft.storage/2023-05-01/storageaccounts/blobservices (name 'default')"},
	{"Microsoft.Storage/storageAccounts/blobServices/containers", "2023-05-01", nil,
		"bicep-types-az generated/storage/microsoft.storage/2023-05-01; learn.microsoft.com/azure/templates/microsoft.storage/2023-05-01/storageaccounts/blobservices/containers"},
	{"Microsoft.Authorization/roleAssignments", "2022-04-01",
		[]string{"properties.roleDefinitionId", "properties.principalId", "properties.principalType"},
		"bicep-types-az generated/authorization/microsoft.authorization/2022-04-01; learn.microsoft.com/azure/templates/microsoft.authorization/2022-04-01/roleassignments"},
	{"Microsoft.OperationalInsights/workspaces", "2023-09-01",
		[]string{"location", "tags.*", "properties.sku.name", "properties.retentionInDays"},
		"bicep-types-az generated/operationalinsights/microsoft.operationalinsights/2023-09-01; learn.microsoft.com/azure/templates/microsoft.operationalinsights/2023-09-01/workspaces"},
	{"Microsoft.Insights/components", "2020-02-02",
		[]string{"location", "tags.*", "kind", "properties.Application_Type", "properties.WorkspaceResourceId", "properties.DisableLocalAuth"},
		"bicep-types-az generated/applicationinsights/microsoft.insights/2020-02-02; learn.microsoft.com/azure/templates/microsoft.insights/2020-02-02/components"},
	{"Microsoft.Web/serverfarms", "2024-04-01",
		[]string{"location", "tags.*", "kind", "sku.name", "sku.tier", "properties.reserved"},
		"bicep-types-az generated/web/microsoft.web/2024-04-01; learn.microsoft.com/azure/templates/microsoft.web/2024-04-01/serverfarms"},
	{"Microsoft.Web/sites", "2024-04-01",
		[]string{"location", "tags", "tags.*", "kind", "identity.type", "identity.userAssignedIdentities.*",
			"properties.serverFarmId", "properties.httpsOnly", "properties.siteConfig.minTlsVersion",
			"properties.functionAppConfig.deployment.storage.type", "properties.functionAppConfig.deployment.storage.value",
			"properties.functionAppConfig.deployment.storage.authentication.type",
			"properties.keyVaultReferenceIdentity",
			"properties.functionAppConfig.deployment.storage.authentication.userAssignedIdentityResourceId",
			"properties.functionAppConfig.scaleAndConcurrency.maximumInstanceCount",
			"properties.functionAppConfig.scaleAndConcurrency.instanceMemoryMB",
			"properties.functionAppConfig.runtime.name", "properties.functionAppConfig.runtime.version"},
		"bicep-types-az generated/web/microsoft.web/2024-04-01 (functionAppConfig: FunctionAppConfig); learn.microsoft.com/azure/templates/microsoft.web/2024-04-01/sites"},
	{"Microsoft.Web/sites/config", "2024-04-01",
		[]string{"properties", "properties.*"},
		"bicep-types-az generated/web/microsoft.web/2024-04-01 (name 'appsettings': properties is a string map, given whole as the union of two objects); learn.microsoft.com/azure/templates/microsoft.web/2024-04-01/sites/config-appsettings"},
	{"Microsoft.EventGrid/topics", "2022-06-15", nil,
		"bicep-types-az generated/eventgrid/microsoft.eventgrid/2022-06-15 (existing only: the alert topic's endpoint is read, never written); learn.microsoft.com/azure/templates/microsoft.eventgrid/2022-06-15/topics"},
	{"Microsoft.EventGrid/systemTopics", "2022-06-15",
		[]string{"location", "tags", "tags.*", "properties.source", "properties.topicType"},
		"bicep-types-az generated/eventgrid/microsoft.eventgrid/2022-06-15; learn.microsoft.com/azure/templates/microsoft.eventgrid/2022-06-15/systemtopics"},
	{"Microsoft.KeyVault/vaults", "2023-07-01", nil,
		"bicep-types-az generated/keyvault/microsoft.keyvault/2023-07-01 (existing only: the vault is read, never written); learn.microsoft.com/azure/templates/microsoft.keyvault/2023-07-01/vaults"},
	{"Microsoft.Insights/diagnosticSettings", "2021-05-01-preview",
		[]string{"properties.storageAccountId", "properties.logs[].category", "properties.logs[].enabled"},
		"bicep-types-az generated/monitor_1/microsoft.insights/2021-05-01-preview (an extension resource: scope is the vault); learn.microsoft.com/azure/templates/microsoft.insights/2021-05-01-preview/diagnosticsettings"},
}

// matchProp reports whether path is one of the patterns.
func matchProp(patterns []string, path string) bool {
	for _, p := range patterns {
		if p == path || (strings.HasSuffix(p, ".*") && strings.HasPrefix(path, strings.TrimSuffix(p, "*"))) {
			return true
		}
	}
	return false
}

// Every resource type and API version in infra/ is one confirmed above,
// and every property the template writes is one listed for it: a typo in a
// type, an unconfirmed API version or a misspelt property fails here
// rather than in ARM. A row nothing uses fails too, so the table stays the
// template's.
func TestResourceTypesConfirmed(t *testing.T) {
	used := map[int]bool{}
	for _, d := range declarations(t) {
		if d.Kind != "resource" {
			continue
		}
		i := slices.IndexFunc(confirmedTypes, func(c confirmed) bool {
			return c.typ == d.Type && c.apiVersion == d.APIVersion
		})
		if i < 0 {
			t.Errorf("%s:%d: resource %s is %s@%s, which is not in confirmedTypes: confirm it against the type library and add a row with its source", d.File, d.Line, d.Symbol, d.Type, d.APIVersion)
			continue
		}
		used[i] = true
		for _, p := range d.Properties {
			if slices.Contains([]string{"name", "scope", "parent"}, p) {
				continue
			}
			if !matchProp(confirmedTypes[i].props, p) {
				t.Errorf("%s:%d: resource %s writes %s, which confirmedTypes does not list for %s@%s", d.File, d.Line, d.Symbol, p, d.Type, d.APIVersion)
			}
		}
	}
	for i, c := range confirmedTypes {
		if !used[i] {
			t.Errorf("confirmedTypes lists %s@%s, which infra/ no longer declares", c.typ, c.apiVersion)
		}
		if !strings.Contains(c.source, "bicep-types-az generated/") || !strings.Contains(c.source, "learn.microsoft.com/azure/templates/") {
			t.Errorf("%s@%s: a row cites its sources", c.typ, c.apiVersion)
		}
	}
}

// The declarations dump sees what the table test relies on: a misspelt
// property and an unknown API version are reported, not lost.
func TestResourceTypesCheckCatches(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.bicep": "resource s 'Microsoft.Storage/storageAccounts@2023-05-02' = {\n  name: 's'\n  location: 'x'\n  properties: {\n    allowSharedKeyAcess: false\n  }\n}\n"})
	out, err := lintBicep(t, "--declarations", filepath.Join(dir, "a.bicep"))
	if err != nil {
		t.Fatal(err, out)
	}
	var ds []declaration
	if err := json.Unmarshal([]byte(out), &ds); err != nil || len(ds) != 1 {
		t.Fatalf("%v: %s", err, out)
	}
	d := ds[0]
	if d.APIVersion != "2023-05-02" || !slices.Contains(d.Properties, "properties.allowSharedKeyAcess") {
		t.Fatalf("dump lost the mistakes: %+v", d)
	}
	row := confirmedTypes[slices.IndexFunc(confirmedTypes, func(c confirmed) bool { return c.typ == "Microsoft.Storage/storageAccounts" })]
	if row.apiVersion == d.APIVersion || matchProp(row.props, "properties.allowSharedKeyAcess") {
		t.Fatal("the table would accept the mistakes")
	}
}
