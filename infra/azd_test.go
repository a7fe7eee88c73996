package infra

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// yamlMap is the subset of YAML azure.yaml is written in: nested maps of
// scalars, two-space indents, comments. parseYAML refuses anything else
// (lists, anchors, flow collections, block scalars), so the checks below
// never judge a file they misread.
type yamlMap map[string]any

func parseYAML(src string) (yamlMap, error) {
	root := yamlMap{}
	// A frame is a map being filled: the indent of the key that opened it
	// (-1 for the document) and the indent its own keys have (-1 until the
	// first one).
	type frame struct {
		keyIndent, childIndent int
		m                      yamlMap
	}
	stack := []*frame{{-1, -1, root}}
	var pending string // key whose map opens on the next deeper line
	pendingIndent := 0
	for n, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if strings.ContainsAny(line[:indent], "\t") || indent%2 != 0 {
			return nil, fmt.Errorf("line %d: indent is not two spaces", n+1)
		}
		if strings.HasPrefix(trimmed, "- ") || strings.ContainsAny(trimmed[:1], "[{&*|>!") {
			return nil, fmt.Errorf("line %d: %q is outside the YAML subset this test reads", n+1, trimmed)
		}
		if pending != "" {
			if indent <= pendingIndent {
				return nil, fmt.Errorf("line %d: %s has no value", n+1, pending)
			}
			m := yamlMap{}
			stack[len(stack)-1].m[pending] = m
			stack = append(stack, &frame{pendingIndent, -1, m})
			pending = ""
		}
		for indent <= stack[len(stack)-1].keyIndent {
			stack = stack[:len(stack)-1]
		}
		top := stack[len(stack)-1]
		if top.childIndent < 0 {
			top.childIndent = indent
		}
		if indent != top.childIndent {
			return nil, fmt.Errorf("line %d: unexpected indent", n+1)
		}
		key, value, ok := strings.Cut(trimmed, ":")
		if !ok || key == "" || strings.ContainsAny(key, " \"'") {
			return nil, fmt.Errorf("line %d: %q is not key: value", n+1, trimmed)
		}
		if _, dup := top.m[key]; dup {
			return nil, fmt.Errorf("line %d: %s twice", n+1, key)
		}
		value = strings.TrimSpace(value)
		if i := strings.Index(value, " #"); i >= 0 {
			value = strings.TrimSpace(value[:i])
		}
		if value == "" {
			pending, pendingIndent = key, indent
			continue
		}
		if value[0] == '"' || value[0] == '\'' {
			if len(value) < 2 || value[len(value)-1] != value[0] {
				return nil, fmt.Errorf("line %d: unterminated quote", n+1)
			}
			value = value[1 : len(value)-1]
		} else if strings.ContainsAny(value[:1], "[{&*|>!") {
			return nil, fmt.Errorf("line %d: %q is outside the YAML subset this test reads", n+1, value)
		}
		top.m[key] = value
	}
	if pending != "" {
		return nil, fmt.Errorf("%s has no value", pending)
	}
	return root, nil
}

// azdSchema is the part of azd's schema (Azure/azure-dev
// schemas/v1.0/azure.yaml.json, identical for these fields at tag
// azure-dev-cli_1.20.0 and at commit ae35809f of 2026-08-21) that the
// fields kvaudit uses must keep: the keys each object may have, the values
// an enum allows, the patterns.
var azdSchema = struct {
	top, infra, service, hook, requiredVersions []string
	projectHooks, serviceHooks                  []string
	shells                                      []string
	name                                        *regexp.Regexp
	provider                                    *regexp.Regexp
}{
	// Top level: additionalProperties is true, but a misspelt key is ours.
	top:              []string{"name", "resourceGroup", "metadata", "infra", "services", "resources", "pipeline", "hooks", "requiredVersions", "state", "platform", "workflows", "cloud"},
	infra:            []string{"provider", "path", "module"},
	service:          []string{"apiVersion", "resourceGroup", "resourceName", "project", "image", "host", "language", "module", "dist", "docker", "k8s", "config", "uses", "hooks"},
	hook:             []string{"shell", "run", "continueOnError", "interactive", "windows", "posix", "secrets"}, // 1.20.0's definitions/hook
	requiredVersions: []string{"azd", "extensions"},
	projectHooks:     []string{"preprovision", "postprovision", "preinfracreate", "postinfracreate", "preinfradelete", "postinfradelete", "predown", "postdown", "preup", "postup", "prepackage", "postpackage", "predeploy", "postdeploy", "prerestore", "postrestore", "prepublish", "postpublish"},
	serviceHooks:     []string{"predeploy", "postdeploy", "prerestore", "postrestore", "prebuild", "postbuild", "prepackage", "postpackage", "prepublish", "postpublish"},
	shells:           []string{"sh", "pwsh"},
	name:             regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`),
	provider:         regexp.MustCompile(`^[a-z0-9.]+$`),
}

func keysIn(t *testing.T, where string, m yamlMap, allowed []string) {
	t.Helper()
	for k := range m {
		if !slices.Contains(allowed, k) {
			t.Errorf("azure.yaml %s: %s is not a key azd's schema allows there (%v)", where, k, allowed)
		}
	}
}

func sub(t *testing.T, where string, v any) yamlMap {
	t.Helper()
	m, ok := v.(yamlMap)
	if !ok {
		t.Fatalf("azure.yaml %s: want a map, got %#v", where, v)
	}
	return m
}

// checkHook checks one hook: its keys, its shell, and for a file it runs,
// that the file is there relative to base (azd resolves run against the
// project or service folder, never the current directory), is executable
// for sh, and parses.
func checkHook(t *testing.T, where string, v any, base string) {
	t.Helper()
	h := sub(t, where, v)
	keysIn(t, where, h, azdSchema.hook)
	_, win := h["windows"]
	_, posix := h["posix"]
	if win && posix {
		// The schema forbids run and shell beside both.
		for _, k := range []string{"run", "shell", "continueOnError", "interactive", "secrets"} {
			if _, ok := h[k]; ok {
				t.Errorf("azure.yaml %s: %s beside windows and posix", where, k)
			}
		}
		checkHook(t, where+".windows", h["windows"], base)
		checkHook(t, where+".posix", h["posix"], base)
		return
	}
	if !win && !posix && !strings.HasSuffix(where, ".windows") && !strings.HasSuffix(where, ".posix") {
		t.Errorf("azure.yaml %s: kvaudit's hooks name a posix and a windows form", where)
	}
	run, _ := h["run"].(string)
	shell, _ := h["shell"].(string)
	if run == "" {
		t.Errorf("azure.yaml %s: no run", where)
		return
	}
	if !slices.Contains(azdSchema.shells, shell) {
		t.Errorf("azure.yaml %s: shell %q, want one of %v", where, shell, azdSchema.shells)
	}
	if strings.HasSuffix(where, ".windows") != (shell == "pwsh") {
		t.Errorf("azure.yaml %s: shell %s", where, shell)
	}
	if !strings.HasPrefix(run, "./") {
		return // an inline command
	}
	if strings.Contains(run, "..") {
		t.Errorf("azure.yaml %s: %s leaves the project", where, run)
	}
	p := filepath.Join(base, filepath.FromSlash(run))
	st, err := os.Stat(p)
	if err != nil {
		t.Errorf("azure.yaml %s: %s: %v", where, run, err)
		return
	}
	switch shell {
	case "sh":
		if st.Mode()&0o111 == 0 {
			t.Errorf("azure.yaml %s: %s is not executable", where, run)
		}
		if sh, err := exec.LookPath("sh"); err == nil {
			if out, err := exec.Command(sh, "-n", p).CombinedOutput(); err != nil {
				t.Errorf("azure.yaml %s: sh -n %s: %v\n%s", where, run, err, out)
			}
		}
	case "pwsh":
		if !strings.HasSuffix(run, ".ps1") {
			t.Errorf("azure.yaml %s: %s is not a .ps1", where, run)
		}
	}
	// A hook's own paths must not depend on the directory azd runs from.
	src, _ := os.ReadFile(p)
	if m := regexp.MustCompile(`(?m)(^|[\s"'(])\.\.?/[^\s"']*`).FindString(string(src)); m != "" {
		t.Errorf("azure.yaml %s: %s uses the relative path %q", where, run, strings.TrimSpace(m))
	}
}

// azure.yaml against azd's schema for the fields it uses, and against what
// azd does with them (issue 16 items 2, 3, 6): the azd version that knows
// language custom is required, dist is the zip make package writes (azd
// deploys a .zip as it is, and re-zips a folder without exec bits for
// language custom), every path is the project's.
func TestAzureYAML(t *testing.T) {
	doc, err := parseYAML(read(t, "azure.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	keysIn(t, "top level", doc, azdSchema.top)
	if n, _ := doc["name"].(string); len(n) < 2 || !azdSchema.name.MatchString(n) {
		t.Errorf("azure.yaml name %q does not match %s", n, azdSchema.name)
	}

	// Item 2: language custom needs azd 1.20.0 (its alpha feature
	// language.custom, cli/azd/resources/alpha_features.yaml, first in that
	// tag); requiredVersions makes an older azd say so itself.
	rv := sub(t, "requiredVersions", doc["requiredVersions"])
	keysIn(t, "requiredVersions", rv, azdSchema.requiredVersions)
	if rv["azd"] != ">= 1.20.0" {
		t.Errorf(`azure.yaml requiredVersions.azd = %q, want ">= 1.20.0"`, rv["azd"])
	}

	infra := sub(t, "infra", doc["infra"])
	keysIn(t, "infra", infra, azdSchema.infra)
	if p, _ := infra["provider"].(string); p != "bicep" || !azdSchema.provider.MatchString(p) {
		t.Errorf("azure.yaml infra.provider %q", p)
	}
	if _, err := os.Stat(filepath.Join("..", fmt.Sprint(infra["path"]), fmt.Sprint(infra["module"])+".bicep")); err != nil {
		t.Errorf("azure.yaml infra: %v", err)
	}

	services := sub(t, "services", doc["services"])
	if len(services) != 1 {
		t.Fatalf("azure.yaml: %d services, want kvaudit alone", len(services))
	}
	zip := regexp.MustCompile(`\$\(GO\) run \./tools/package -o (\S+\.zip)`).FindStringSubmatch(read(t, "Makefile"))
	if zip == nil {
		t.Fatal("Makefile: make package does not name its zip")
	}
	for name, v := range services {
		svc := sub(t, "services."+name, v)
		keysIn(t, "services."+name, svc, azdSchema.service)
		if svc["host"] != "function" || svc["language"] != "custom" || svc["project"] != "." {
			t.Errorf("azure.yaml services.%s: host %v, language %v, project %v", name, svc["host"], svc["language"], svc["project"])
		}
		if _, ok := svc["image"]; ok {
			t.Errorf("azure.yaml services.%s: image beside project", name)
		}
		// Item 3: the tested, reproducible zip, deployed as it is.
		if svc["dist"] != zip[1] {
			t.Errorf("azure.yaml services.%s.dist = %v, want %s (the zip make package writes)", name, svc["dist"], zip[1])
		}
		base := filepath.Join("..", fmt.Sprint(svc["project"]))
		hooks := sub(t, "services."+name+".hooks", svc["hooks"])
		keysIn(t, "services."+name+".hooks", hooks, azdSchema.serviceHooks)
		for h, hv := range hooks {
			checkHook(t, "services."+name+".hooks."+h, hv, base)
		}
		pre := sub(t, "prepackage", hooks["prepackage"])
		if sub(t, "posix", pre["posix"])["run"] != "make package" ||
			sub(t, "windows", pre["windows"])["run"] != "go run ./tools/package -o "+zip[1]+" -dir dist/kvaudit" {
			t.Errorf("azure.yaml prepackage does not run make package (or its Windows equivalent): %v", pre)
		}
	}

	hooks := sub(t, "hooks", doc["hooks"])
	keysIn(t, "hooks", hooks, azdSchema.projectHooks)
	for _, h := range []string{"preprovision", "postdeploy"} {
		if _, ok := hooks[h]; !ok {
			t.Errorf("azure.yaml has no %s hook", h)
		}
	}
	for h, hv := range hooks {
		checkHook(t, "hooks."+h, hv, "..")
	}

	// Item 6: azd resolves a custom service's dist against the directory it
	// runs in (cli/azd/pkg/project/framework_service_custom.go hands
	// serviceConfig.OutputPath on unjoined); azure.yaml and the README say
	// so where a user reads it.
	azure := read(t, "azure.yaml")
	readme := read(t, "README.md")
	for where, src := range map[string]string{"azure.yaml": azure, "README.md": readme} {
		for _, want := range []string{"alpha.language.custom", "1.20.0", "AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM"} {
			if !strings.Contains(src, want) {
				t.Errorf("%s does not say %q (language custom is an azd alpha feature)", where, want)
			}
		}
	}
	if !strings.Contains(azure, "Run azd from this folder") || !strings.Contains(readme, "Run `azd` from the repository's root") {
		t.Error("azure.yaml and the README do not say to run azd from the repository's root (dist is read against the current directory)")
	}
}

// The YAML subset reader refuses what it cannot read, rather than misread it.
func TestParseYAMLSubset(t *testing.T) {
	good := "a: 1\nb:\n  c: \"x y\" # comment\n  d:\n    e: '>= 1'\nf: g\n"
	m, err := parseYAML(good)
	if err != nil {
		t.Fatal(err)
	}
	if m["a"] != "1" || m["f"] != "g" || sub(t, "b", m["b"])["c"] != "x y" || sub(t, "d", sub(t, "b", m["b"])["d"])["e"] != ">= 1" {
		t.Fatalf("%#v", m)
	}
	for _, bad := range []string{"a:\n  - x\n", "a: [x]\n", "a: |\n  x\n", "a:\n", "a: 1\na: 2\n", "a:\n   b: 1\n", "a: &x 1\n"} {
		if _, err := parseYAML(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}
