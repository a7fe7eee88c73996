# kvaudit — every command a newcomer needs. `make help` lists them.
SHELL := /bin/bash
GO ?= go
TOOLS := $(CURDIR)/.tools/bin
STATICCHECK := $(TOOLS)/staticcheck
STATICCHECK_VERSION := v0.8.2
AZURITE := node_modules/.bin/azurite

.PHONY: help build package test chaos lint bench run fuzz clean browser

help:
	@echo "make run     Azurite + the handler, sample logs loaded, a query to try"
	@echo "make test    make lint, then every test with -race (starts its own Azurite)"
	@echo "make chaos   the fault suite, slow cases too (storage and handler killed, stalls, functionTimeout): about 8 min"
	@echo "make bench   benchmarks"
	@echo "make fuzz    each fuzz target for FUZZTIME (default 30s)"
	@echo "make browser install Chromium (Debian's chromium, as root) for the web page's browser tests"
	@echo "make lint    gofmt, go vet, staticcheck, and every infra/*.bicep parsed (tree-sitter-bicep)"
	@echo "make build   bin/handler, the binary host.json names (for this machine)"
	@echo "make package dist/kvaudit.zip for Azure (linux/amd64, Event Grid blob trigger); prints its sha256"

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/handler ./handler

# The app as Azure runs it: the handler for linux/amd64, whatever this
# machine is, and the function folders; dist/kvaudit/ is the same unpacked
# (for func azure functionapp publish). Same commit, same bytes.
package:
	$(GO) run ./tools/package -o dist/kvaudit.zip -dir dist/kvaudit

$(AZURITE): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $(AZURITE)

$(STATICCHECK):
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: $(STATICCHECK) $(AZURITE)
	@files=$$(gofmt -l $$(find . -name '*.go' -not -path './node_modules/*' -not -path './.tools/*')); \
	  if [ -n "$$files" ]; then echo "gofmt would change:"; echo "$$files"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	node scripts/lint-bicep.js infra

# The web page's tests drive Debian's chromium (handler/browser_test.go).
# Installed when missing and apt-get can (root); otherwise the tests skip
# locally with the command to run, and fail in CI (CI set).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	  else \
	    echo "make browser: Chromium is missing; install it: sudo apt-get install -y --no-install-recommends chromium"; \
	  fi

# KVAUDIT_REQUIRE_AZURITE turns a missing Azurite into a failure, not a skip.
test: $(AZURITE) lint browser
	KVAUDIT_REQUIRE_AZURITE=1 $(GO) test -race -count=1 -timeout 15m ./...

# The fault suite (internal/faults) with its slow cases; `make test` runs
# only the fast ones. It prints the fault table at the end.
chaos: $(AZURITE)
	KVAUDIT_CHAOS=1 KVAUDIT_REQUIRE_AZURITE=1 $(GO) test -count=1 -timeout 20m -v ./internal/faults/

bench: $(AZURITE) build
	$(GO) run ./tools/kvbench -v $(BENCHFLAGS)

FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

run: $(AZURITE) build
	./scripts/run-local.sh

clean:
	rm -rf bin .run dist handler/testdata/screenshots
