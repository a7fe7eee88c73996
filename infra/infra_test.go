package infra

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kvaudit/kvaudit/internal/config"
)

// read returns a file of the repository (paths relative to its root).
func read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// block returns the text of the brace-delimited block that opens on the
// line starting with opener, up to its closing brace at line start.
func block(t *testing.T, src, opener string) string {
	t.Helper()
	i := strings.Index(src, "\n"+opener)
	if i < 0 {
		t.Fatalf("no %q in main.bicep", opener)
	}
	rest := src[i+1:]
	j := strings.Index(rest, "\n}")
	if j < 0 {
		t.Fatalf("%q is not closed", opener)
	}
	return rest[:j]
}

var propertyRE = regexp.MustCompile(`(?m)^\s+([A-Za-z_][A-Za-z0-9_]*):\s*(.+)$`)

// appSettings is main.bicep's var appSettings: name → Bicep expression.
func appSettings(t *testing.T) map[string]string {
	t.Helper()
	b := block(t, read(t, "infra/main.bicep"), "var appSettings = {")
	m := map[string]string{}
	for _, sm := range propertyRE.FindAllStringSubmatch(b, -1) {
		if _, dup := m[sm[1]]; dup {
			t.Errorf("app setting %s set twice", sm[1])
		}
		m[sm[1]] = strings.TrimSpace(sm[2])
	}
	if len(m) == 0 {
		t.Fatal("no app settings found in main.bicep")
	}
	return m
}

// function is one function folder's function.json.
type function struct {
	Name     string
	Bindings []map[string]any
	raw      string
}

func functions(t *testing.T) []function {
	t.Helper()
	dirs, err := filepath.Glob("../*/function.json")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no function folders: %v", err)
	}
	var fns []function
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fn := function{Name: filepath.Base(filepath.Dir(p)), raw: string(b)}
		if err := json.Unmarshal(b, &fn); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		fns = append(fns, fn)
	}
	return fns
}

// regionalSettings is main.bicep's var regionalAppSettings: each other
// region's logs account's settings, name (with ${r.account}) → expression.
func regionalSettings(t *testing.T) map[string]string {
	t.Helper()
	b := block(t, read(t, "infra/main.bicep"), "var regionalAppSettings = reduce(")
	m := map[string]string{}
	for _, sm := range regexp.MustCompile(`(?m)^\s+'([^']+)':\s*(.+)$`).FindAllStringSubmatch(b, -1) {
		m[sm[1]] = strings.TrimSpace(sm[2])
	}
	if len(m) == 0 {
		t.Fatal("no regional app settings found in main.bicep")
	}
	return m
}

// sampleAccount stands for ${r.account} in a regional setting's name.
const sampleAccount = "stkvlogsample0000000001"

// packagedFunctions are the function folders .funcignore does not leave
// out: what tools/package ships (a test there keeps the two equal).
func packagedFunctions(t *testing.T) []string {
	t.Helper()
	ignore := read(t, ".funcignore")
	var out []string
	for _, fn := range functions(t) {
		if !strings.Contains("\n"+ignore, "\n"+fn.Name+"/\n") {
			out = append(out, fn.Name)
		}
	}
	return out
}

// Every app setting the template sets is one kvaudit reads or one the
// host reads; none is one Flex Consumption refuses or one holding a key.
func TestAppSettingsAreKnown(t *testing.T) {
	known := append(config.Names(), config.HostSettings...)
	for name, value := range regionalSettings(t) {
		n := strings.ReplaceAll(name, "${r.account}", sampleAccount)
		if !strings.HasPrefix(name, "AuditLogsStorage_${r.account}__") || !config.IsName(n) {
			t.Errorf("regional app setting %s is not a logs account setting kvaudit reads (config.IsName)", name)
		}
		if strings.Contains(strings.ToLower(value), "accountkey") || strings.Contains(value, "listKeys") {
			t.Errorf("app setting %s = %s: identity everywhere, no keys", name, value)
		}
	}
	refused := []string{
		"FUNCTIONS_WORKER_RUNTIME",    // functionAppConfig.runtime on Flex
		"WEBSITE_RUN_FROM_PACKAGE",    // functionAppConfig.deployment on Flex
		"FUNCTIONS_EXTENSION_VERSION", // fixed by Flex
		"WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
		"WEBSITE_CONTENTSHARE",
		"AzureWebJobsStorage", // a connection string: keys
	}
	for name, value := range appSettings(t) {
		if slices.Contains(refused, name) {
			t.Errorf("app setting %s: Flex Consumption refuses it or it holds a key", name)
			continue
		}
		if !slices.Contains(known, name) {
			t.Errorf("app setting %s is neither read by internal/config (config.Names) nor the host's (config.HostSettings)", name)
		}
		if strings.Contains(strings.ToLower(value), "accountkey") || strings.Contains(value, "listKeys") {
			t.Errorf("app setting %s = %s: identity everywhere, no keys", name, value)
		}
	}
}

// Every setting a deployment needs is set: what the functions' bindings
// name (each connection, by identity, with the queue endpoint for a blob
// trigger; each %Setting% expression), the index and host storage by
// identity, and Application Insights with identity authentication.
func TestAppSettingsNeededAreSet(t *testing.T) {
	set := appSettings(t)
	need := map[string]string{}
	identity := func(conn, why string) {
		need[conn+"__credential"] = why
		need[conn+"__clientId"] = why
	}
	percent := regexp.MustCompile(`%([A-Za-z0-9_]+)%`)
	shipped := packagedFunctions(t)
	for _, fn := range functions(t) {
		if !slices.Contains(shipped, fn.Name) {
			continue // for local runs only: not in the package
		}
		for _, m := range percent.FindAllStringSubmatch(fn.raw, -1) {
			need[m[1]] = fn.Name + "/function.json reads %" + m[1] + "%"
		}
		for _, b := range fn.Bindings {
			conn, _ := b["connection"].(string)
			if conn == "" {
				continue
			}
			why := fn.Name + "'s " + b["type"].(string) + " connection"
			need[conn+"__blobServiceUri"] = why
			identity(conn, why)
			if b["type"] == "blobTrigger" {
				need[conn+"__queueServiceUri"] = why + ": Event Grid notifications and poison messages are queued there"
			}
		}
	}
	need[config.SettingIndexStorage+"__tableServiceUri"] = "the index tables"
	identity(config.SettingIndexStorage, "the index tables")
	need["AzureWebJobsStorage__accountName"] = "the host's storage"
	identity("AzureWebJobsStorage", "the host's storage")
	need["APPLICATIONINSIGHTS_CONNECTION_STRING"] = "the app's own logs"
	need["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] = "Application Insights with identity auth (local auth disabled)"
	need[config.SettingRetentionDays] = "the RetentionDays parameter"
	need[config.SettingLogsRegion] = "the first logs account's region"
	need[config.SettingLogsAccounts] = "the other regions' logs accounts"
	regional := regionalSettings(t)
	for _, suf := range []string{"__blobServiceUri", "__credential", "__clientId"} {
		name := "AuditLogsStorage_${r.account}" + suf
		v, ok := regional[name]
		switch {
		case !ok:
			t.Errorf("regional app setting %s is not set", name)
		case suf == "__credential" && v != "'managedidentity'":
			t.Errorf("%s = %s, want 'managedidentity'", name, v)
		case suf == "__clientId" && v != "identity.properties.clientId":
			t.Errorf("%s = %s, want the user-assigned identity's client id", name, v)
		}
	}
	if !strings.Contains(read(t, "infra/main.bicep"), "properties: union(appSettings, regionalAppSettings)") {
		t.Error("the app's settings are not appSettings and regionalAppSettings")
	}
	for name, why := range need {
		v, ok := set[name]
		if !ok {
			t.Errorf("app setting %s is not set (%s)", name, why)
			continue
		}
		switch {
		case strings.HasSuffix(name, "__credential") && v != "'managedidentity'":
			t.Errorf("%s = %s, want 'managedidentity'", name, v)
		case strings.HasSuffix(name, "__clientId") && v != "identity.properties.clientId":
			t.Errorf("%s = %s, want the user-assigned identity's client id", name, v)
		}
	}
	if v := set["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]; !strings.Contains(v, "identity.properties.clientId") || !strings.Contains(v, "Authorization=AAD") {
		t.Errorf("APPLICATIONINSIGHTS_AUTHENTICATION_STRING = %s", v)
	}
}

// The built-in roles, by GUID, and what each is for.
var wantRoles = map[string]string{
	"2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "storageBlobDataReader",
	"b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "storageBlobDataOwner",
	"974c5e8b-45b9-4653-ba55-5f855dd0fb88": "storageQueueDataContributor",
	"0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "storageTableDataContributor",
	"17d1049b-9a84-46fb-8f53-869881c3d3ab": "storageAccountContributor",
	"3913510d-42f4-4e42-8a64-420c390055eb": "monitoringMetricsPublisher",
	"d5a91429-5739-47e2-a06b-3470a27159e7": "eventGridDataSender",
}

var guidRE = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)

func bicepFiles(t *testing.T) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".bicep") {
			b, err := os.ReadFile(p)
			files[p] = string(b)
			return err
		}
		return err
	})
	if err != nil || len(files) == 0 {
		t.Fatalf("bicep files: %v", err)
	}
	return files
}

func TestRoleGUIDs(t *testing.T) {
	for p, src := range bicepFiles(t) {
		for _, g := range guidRE.FindAllString(src, -1) {
			if _, ok := wantRoles[strings.ToLower(g)]; !ok {
				t.Errorf("%s: GUID %s is not one of the built-in roles kvaudit grants", p, g)
			}
		}
	}
	roles := block(t, read(t, "infra/main.bicep"), "var roles = {")
	for g, name := range wantRoles {
		if !strings.Contains(roles, name+": '"+g+"'") {
			t.Errorf("var roles lacks %s: '%s'", name, g)
		}
	}
	// Who gets what: each account's role list names the roles it needs.
	src := read(t, "infra/main.bicep")
	grants := map[string][]string{
		"hostRoles":         {"storageBlobDataOwner", "storageQueueDataContributor", "storageTableDataContributor", "storageAccountContributor"},
		"logsRoles":         {"storageBlobDataReader"},
		"regionalLogsRoles": {"storageBlobDataReader"},
		"indexRoles":        {"storageTableDataContributor"},
	}
	for module, want := range grants {
		b := block(t, src, "module "+module+" ")
		for _, r := range want {
			if !strings.Contains(b, "roles."+r) {
				t.Errorf("module %s does not grant %s", module, r)
			}
		}
	}
	if !strings.Contains(block(t, src, "resource metricsPublisher "), "roles.monitoringMetricsPublisher") {
		t.Error("no Monitoring Metrics Publisher on Application Insights")
	}
	if !strings.Contains(block(t, src, "module alertTopicSender "), "roles.eventGridDataSender") {
		t.Error("no EventGrid Data Sender on the alert topic")
	}
}

// defaultContainer is LogsContainer's default, from the config itself.
func defaultContainer(t *testing.T) string {
	t.Helper()
	s, err := config.FromLookup(func(k string) (string, bool) {
		if k == config.SettingLogsStorage {
			return "UseDevelopmentStorage=true", true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	return s.LogsContainer
}

func TestContainerAndFunctionNames(t *testing.T) {
	container := defaultContainer(t)
	if !strings.Contains(read(t, "infra/main.bicep"), "var logsContainerName = '"+container+"'") {
		t.Errorf("main.bicep's logsContainerName is not LogsContainer's default %q", container)
	}
	var eventGridTriggers []string
	for _, fn := range functions(t) {
		for _, b := range fn.Bindings {
			switch b["type"] {
			case "blobTrigger":
				// Local runs only (func start polls Azurite).
				if p, _ := b["path"].(string); !strings.HasPrefix(p, container+"/") {
					t.Errorf("%s/function.json path %q is not in %s", fn.Name, p, container)
				}
			case "eventGridTrigger":
				eventGridTriggers = append(eventGridTriggers, fn.Name)
			}
		}
	}
	if !slices.Equal(eventGridTriggers, []string{"EventGridTrigger"}) || !slices.Contains(packagedFunctions(t), "EventGridTrigger") {
		t.Errorf("Event Grid trigger folders %q, want EventGridTrigger, packaged", eventGridTriggers)
	}
	// The Event Grid extension finds the function by its bare name (it
	// keys its listeners by the last part of the function's name).
	fnRE := regexp.MustCompile(`functionName=([A-Za-z0-9_.]+)`)
	deadLetter := regexp.MustCompile(`\nvar deadLetterContainerName = '([a-z0-9-]+)'\n`).FindStringSubmatch(read(t, "infra/main.bicep"))
	if deadLetter == nil {
		t.Fatal("main.bicep has no deadLetterContainerName")
	}
	for _, hook := range []string{"hooks/postdeploy.sh", "hooks/postdeploy.ps1"} {
		src := read(t, hook)
		m := fnRE.FindAllStringSubmatch(src, -1)
		if len(m) != 1 || !slices.Contains(eventGridTriggers, m[0][1]) {
			t.Errorf("%s: webhook function %v, want the Event Grid trigger's folder %q", hook, m, eventGridTriggers)
		}
		for _, want := range []string{
			"/runtime/webhooks/eventgrid?",
			"systemKeys.eventgrid_extension",
			"Microsoft.Storage.BlobCreated",
			"/blobServices/default/containers/",
			"--deadletter-endpoint",
			deadLetter[1],
			container,
		} {
			if !strings.Contains(src, want) {
				t.Errorf("%s does not contain %s", hook, want)
			}
		}
		// Every deployment variable the hook reads is an output.
		outputs := read(t, "infra/main.bicep")
		varRE := regexp.MustCompile(`(?:\$\{|\$env:|')((?:AZURE|AUDIT|EVENTGRID)_[A-Z0-9_]+)`)
		for _, v := range varRE.FindAllStringSubmatch(src, -1) {
			if !strings.Contains(outputs, "\noutput "+v[1]+" ") {
				t.Errorf("%s reads %s, which main.bicep does not output", hook, v[1])
			}
		}
	}
}

func TestFlexConsumption(t *testing.T) {
	src := read(t, "infra/main.bicep")
	for _, want := range []string{
		"name: 'FC1'", "tier: 'FlexConsumption'", "reserved: true",
		"kind: 'functionapp,linux'",
		"name: 'custom'\n        version: '1.0'",
		"type: 'blobContainer'", "type: 'UserAssignedIdentity'", "userAssignedIdentityResourceId: identity.id",
		"maximumInstanceCount: maximumInstanceCount", "instanceMemoryMB: instanceMemoryMB",
		"@allowed([\n  512\n  2048\n  4096\n])\n@description('Memory of each instance, in MB.')\nparam instanceMemoryMB int",
		"topicType: 'Microsoft.Storage.StorageAccounts'",
		"allowSharedKeyAccess: false",
		"DisableLocalAuth: true",
	} {
		if !strings.Contains(src+read(t, "infra/modules/logs-events.bicep"), want) {
			t.Errorf("main.bicep lacks %q", want)
		}
	}
	diag := read(t, "infra/modules/vault-diagnostics.bicep")
	for _, want := range []string{"category: 'AuditEvent'", "enabled: true", "storageAccountId: storageAccountId", "scope: vault"} {
		if !strings.Contains(diag, want) {
			t.Errorf("vault-diagnostics.bicep lacks %q", want)
		}
	}
}

// azd's parameters file names only parameters main.bicep declares, and the
// azure.yaml service deploys what make package writes.
func TestAzdFiles(t *testing.T) {
	var params struct {
		Parameters map[string]json.RawMessage `json:"parameters"`
	}
	if err := json.Unmarshal([]byte(read(t, "infra/main.parameters.json")), &params); err != nil {
		t.Fatal(err)
	}
	src := read(t, "infra/main.bicep")
	for name := range params.Parameters {
		if !regexp.MustCompile(`\nparam ` + name + ` `).MatchString(src) {
			t.Errorf("main.parameters.json sets %s, which main.bicep does not declare", name)
		}
	}
	azure := read(t, "azure.yaml")
	makefile := read(t, "Makefile")
	for _, want := range []string{"language: custom", "host: function", "dist: dist/kvaudit.zip", "run: make package",
		"run: go run ./tools/package -o dist/kvaudit.zip -dir dist/kvaudit", "postdeploy:", "./hooks/postdeploy.sh", "./hooks/postdeploy.ps1",
		"preprovision:", "./hooks/preprovision.sh", "./hooks/preprovision.ps1"} {
		if !strings.Contains(azure, want) {
			t.Errorf("azure.yaml lacks %q", want)
		}
	}
	// azd finds the app by the tag naming its service.
	svc := regexp.MustCompile(`(?m)^services:\n  ([a-z0-9-]+):`).FindStringSubmatch(azure)
	if svc == nil || !strings.Contains(src, "'azd-service-name': '"+svc[1]+"'") {
		t.Errorf("azure.yaml's service %v is not the function app's azd-service-name tag", svc)
	}
	if !strings.Contains(makefile, "run ./tools/package -o dist/kvaudit.zip -dir dist/kvaudit") {
		t.Error("make package does not write dist/kvaudit.zip, which azure.yaml deploys")
	}
}

// make lint's Bicep check parses the templates and rejects a broken one.
func TestBicepLint(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("KVAUDIT_REQUIRE_AZURITE") == "1" || os.Getenv("CI") != "" {
			t.Fatal("node is required (Node 20, as for Azurite)")
		}
		t.Skip("node not installed")
	}
	if _, err := os.Stat("../node_modules/web-tree-sitter"); err != nil {
		t.Skip("node_modules/web-tree-sitter missing: run npm ci")
	}
	lint := func(args ...string) (string, error) {
		cmd := exec.Command(node, append([]string{"scripts/lint-bicep.js"}, args...)...)
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := lint("infra"); err != nil {
		t.Fatalf("infra does not parse: %v\n%s", err, out)
	}
	broken := filepath.Join(t.TempDir(), "broken.bicep")
	src := strings.Replace(read(t, "infra/main.bicep"), "name: 'FC1'", "name: ", 1) // a property without a value
	if err := os.WriteFile(broken, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := lint(broken)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "broken.bicep:") {
		t.Fatalf("a broken file passed the lint (%v):\n%s", err, out)
	}
}

// The POSIX hook, run against a stand-in az that records its calls: the
// first run creates an event subscription on every logs account's topic
// with the Event Grid trigger's webhook and system key (dead letters to
// the account's container where it has one), the second updates them
// (idempotent), which also repoints a subscription a deployment before
// issue 17 made for the blob trigger.
func TestPostdeployHookIsIdempotent(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	azLog, state := filepath.Join(dir, "az.log"), filepath.Join(dir, "subscribed")
	stub := `#!/bin/sh
echo "az $*" >> "$AZ_LOG"
case "$*" in
"functionapp keys list"*) echo "sys-key_1==" ;;
"resource show --ids "*stweu/blobServices/default/containers/kvaudit-deadletter*) exit 0 ;;
"resource show"*) echo "not found" >&2; exit 3 ;;
"eventgrid system-topic event-subscription show"*) grep -q -- "$6" "$AZ_STATE" 2>/dev/null || exit 3 ;;
"eventgrid system-topic event-subscription create"*) echo "$6" >> "$AZ_STATE" ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "az"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	const (
		weu = "/subscriptions/s/resourceGroups/rg-logs/providers/Microsoft.Storage/storageAccounts/stweu"
		eus = "/subscriptions/s/resourceGroups/rg-app/providers/Microsoft.Storage/storageAccounts/steus"
	)
	run := func() string {
		t.Helper()
		cmd := exec.Command(sh, "hooks/postdeploy.sh")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(),
			"PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"),
			"AZ_LOG="+azLog, "AZ_STATE="+state,
			"AZURE_RESOURCE_GROUP=rg-app", "AZURE_FUNCTION_APP_NAME=func-kvaudit-x",
			"AZURE_FUNCTION_APP_HOSTNAME=func-kvaudit-x.azurewebsites.net",
			"EVENTGRID_TOPICS=evgt-weu|rg-logs|"+weu+",evgt-eus|rg-app|"+eus,
			"EVENTGRID_SUBSCRIPTION_NAME=kvaudit-tok",
		)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("postdeploy.sh: %v\n%s", err, out)
		}
		b, _ := os.ReadFile(azLog)
		_ = os.Remove(azLog)
		return string(b)
	}
	endpoint := "--endpoint https://func-kvaudit-x.azurewebsites.net/runtime/webhooks/eventgrid?functionName=EventGridTrigger&code=sys-key_1== "
	subject := "--subject-begins-with /blobServices/default/containers/" + defaultContainer(t) + "/blobs/ "
	first := run()
	for _, want := range []string{
		"az functionapp keys list --resource-group rg-app --name func-kvaudit-x --query systemKeys.eventgrid_extension",
		"az eventgrid system-topic event-subscription create --resource-group rg-logs --system-topic-name evgt-weu --name kvaudit-tok --endpoint-type webhook " + endpoint,
		"--included-event-types Microsoft.Storage.BlobCreated " + subject + "--deadletter-endpoint " + weu + "/blobServices/default/containers/kvaudit-deadletter --output none",
		"az eventgrid system-topic event-subscription create --resource-group rg-app --system-topic-name evgt-eus --name kvaudit-tok --endpoint-type webhook " + endpoint,
		"--included-event-types Microsoft.Storage.BlobCreated " + subject + "--output none",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("first run lacks %q:\n%s", want, first)
		}
	}
	if strings.Count(first, "event-subscription create") != 2 {
		t.Errorf("first run: want a subscription on each of the two topics:\n%s", first)
	}
	second := run()
	if strings.Contains(second, "event-subscription create") ||
		!strings.Contains(second, "event-subscription update --resource-group rg-logs --system-topic-name evgt-weu --name kvaudit-tok "+endpoint) ||
		!strings.Contains(second, "event-subscription update --resource-group rg-app --system-topic-name evgt-eus --name kvaudit-tok "+endpoint) {
		t.Errorf("second run did not update both subscriptions:\n%s", second)
	}
}

// The settings the template sets are enough for kvaudit: internal/config
// loads them without an error, both accounts by managed identity.
func TestAppSettingsLoad(t *testing.T) {
	env := map[string]string{}
	for name, expr := range appSettings(t) {
		switch {
		case strings.HasPrefix(expr, "'") && strings.HasSuffix(expr, "'") && !strings.Contains(expr, "${"):
			env[name] = strings.Trim(expr, "'")
		case strings.HasSuffix(name, "ServiceUri"):
			svc := strings.TrimSuffix(name[strings.LastIndex(name, "__")+2:], "ServiceUri")
			env[name] = "https://account." + svc + ".core.windows.net"
		case strings.HasSuffix(name, "__clientId"):
			env[name] = "00000000-0000-0000-0000-000000000001"
		case name == config.SettingRetentionDays:
			env[name] = "90"
		case name == config.SettingCatchUpSchedule:
			env[name] = "0 */2 * * * *"
		case strings.HasPrefix(name, "Alert"):
			// Optional parameters, empty by default: no sink.
			env[name] = ""
		case name == config.SettingLogsRegion:
			env[name] = "westeurope"
		case name == config.SettingLogsAccounts:
			env[name] = sampleAccount + ":eastus"
		default:
			env[name] = "from-bicep"
		}
	}
	for name, expr := range regionalSettings(t) {
		name = strings.ReplaceAll(name, "${r.account}", sampleAccount)
		switch {
		case strings.HasSuffix(name, "ServiceUri"):
			env[name] = "https://" + sampleAccount + ".blob.core.windows.net"
		case strings.HasSuffix(name, "__clientId"):
			env[name] = "00000000-0000-0000-0000-000000000001"
		default:
			env[name] = strings.Trim(expr, "'")
		}
	}
	s, err := config.FromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("the template's settings do not load: %v", err)
	}
	if len(s.LogsAccounts) != 2 || s.LogsAccounts[1].Name != sampleAccount || !s.LogsAccounts[1].Account.Identity {
		t.Errorf("logs accounts %v, want the first and %s by identity", s.LogsAccounts, sampleAccount)
	}
	for _, a := range []config.Account{s.Logs, s.Index, s.LogsAccounts[len(s.LogsAccounts)-1].Account} {
		if !a.Identity || a.Credential != "managedidentity" || a.ClientID == "" {
			t.Errorf("%s: not by user-assigned managed identity: %+v", a.Setting, a)
		}
	}
	if s.Logs.BlobURL == "" || s.Index.TableURL == "" {
		t.Errorf("endpoints missing: logs %+v, index %+v", s.Logs, s.Index)
	}
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	if u := config.UnknownAccountSettings(environ); len(u) > 0 {
		t.Errorf("the handler would warn about %q", u)
	}
}

// Every name that lands where other environments may be (module
// deployments in shared resource groups, the diagnostic setting on a vault,
// the event subscription on a shared system topic) carries the
// environment's token (issue 16, item 5): two environments on one vault or
// one logs account keep one each instead of repointing each other's.
func TestNamesCarryTheEnvironmentToken(t *testing.T) {
	src := read(t, "infra/main.bicep")
	if !strings.Contains(src, "\nvar token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))\n") {
		t.Fatal("main.bicep's token no longer derives from the environment")
	}
	moduleRE := regexp.MustCompile(`(?m)^module (\w+) `)
	modules := moduleRE.FindAllStringSubmatch(src, -1)
	if len(modules) == 0 {
		t.Fatal("no modules in main.bicep")
	}
	nameRE := regexp.MustCompile(`(?m)^  name: (.+)$`)
	for _, m := range modules {
		name := nameRE.FindStringSubmatch(block(t, src, "module "+m[1]+" "))
		if name == nil || !strings.Contains(name[1], "${token}") {
			t.Errorf("module %s: deployment name %v does not carry ${token}", m[1], name)
		}
	}
	for _, v := range []string{"diagnosticSettingName", "eventSubscriptionName"} {
		if !regexp.MustCompile(`\nvar ` + v + ` = '[a-z-]*\$\{token\}'\n`).MatchString(src) {
			t.Errorf("var %s does not carry ${token}", v)
		}
	}
	if !strings.Contains(block(t, src, "module vaultDiagnostics "), "settingName: diagnosticSettingName") {
		t.Error("the vaults' diagnostic setting is not named diagnosticSettingName")
	}
	diag := read(t, "infra/modules/vault-diagnostics.bicep")
	if !strings.Contains(diag, "\nparam settingName string\n") || !strings.Contains(diag, "  name: settingName\n") {
		t.Error("vault-diagnostics.bicep's setting name is not a required parameter (a default would be one fixed name again)")
	}
	if !strings.Contains(src, "\noutput EVENTGRID_SUBSCRIPTION_NAME string = eventSubscriptionName\n") {
		t.Error("main.bicep does not output the event subscription's name")
	}
	for _, hook := range []string{"hooks/postdeploy.sh", "hooks/postdeploy.ps1"} {
		h := read(t, hook)
		if strings.Contains(h, "kvaudit-blobtrigger") || !strings.Contains(h, "EVENTGRID_SUBSCRIPTION_NAME") {
			t.Errorf("%s does not name the subscription from EVENTGRID_SUBSCRIPTION_NAME", hook)
		}
	}
	// No other fixed name in a module: names are parameters or derive from them.
	for _, f := range []string{"infra/modules/logs-events.bicep", "infra/modules/storage-roles.bicep", "infra/modules/vault-diagnostics.bicep"} {
		for _, n := range nameRE.FindAllStringSubmatch(read(t, f), -1) {
			if strings.HasPrefix(n[1], "'") && !strings.Contains(n[1], "${") {
				t.Errorf("%s: fixed name %s", f, n[1])
			}
		}
	}
}
