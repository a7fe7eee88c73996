#!/usr/bin/env bash
# make run: Azurite and kvaudit on this machine, the sample logs loaded.
# Under Azure Functions Core Tools when `func` is installed; otherwise the
# handler runs standalone and tools/devhost plays the host's blob trigger.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-7071}
RUN=.run
mkdir -p "$RUN"

ALERT_PORT=${ALERT_PORT:-7072}
for p in 10000 10001 10002 "$PORT" "$ALERT_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "make run: port $p on 127.0.0.1 is in use (another Azurite or handler?); stop it first" >&2
    exit 1
  fi
done

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# Azurite on its standard ports, so UseDevelopmentStorage=true reaches it.
# In memory: every make run starts from the samples again.
node_modules/.bin/azurite --inMemoryPersistence --skipApiVersionCheck --disableTelemetry --silent \
  --blobHost 127.0.0.1 --queueHost 127.0.0.1 --tableHost 127.0.0.1 >"$RUN/azurite.log" 2>&1 &
pids+=($!)
for i in $(seq 1 60); do
  if (exec 3<>/dev/tcp/127.0.0.1/10000) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/10002) 2>/dev/null; then break; fi
  if [ "$i" = 60 ]; then echo "make run: Azurite did not start; see $RUN/azurite.log" >&2; exit 1; fi
  sleep 0.5
done

export AuditLogsStorage="UseDevelopmentStorage=true"
export AuditIndexStorage="UseDevelopmentStorage=true"
export AzureWebJobsStorage="UseDevelopmentStorage=true"

go build -o "$RUN/devhost" ./tools/devhost
"$RUN/devhost" seed -file internal/parse/testdata/sekoia-intake-formats-keyvault.jsonl

# Alerts go to a webhook receiver devhost plays on loopback: it checks each
# alert's Standard Webhooks signature and prints it. The samples hold
# deletes, purges and backups, so sensitive-operation alerts arrive with
# the first poll.
AlertWebhookSecret="whsec_$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
export AlertWebhookSecret
export AlertWebhookUrl="http://127.0.0.1:$ALERT_PORT/alerts"
export AlertPageUrl="http://127.0.0.1:$PORT/api/audit/ui"
"$RUN/devhost" receive -addr "127.0.0.1:$ALERT_PORT" -log "$RUN/alerts.ndjson" &
pids+=($!)

if command -v func >/dev/null 2>&1; then
  [ -f local.settings.json ] || cp local.settings.sample.json local.settings.json
  echo "make run: starting under Azure Functions Core Tools (func start) on port $PORT"
  func start --port "$PORT" &
  pids+=($!)
else
  echo "make run: Core Tools (func) not installed; running the handler standalone, devhost plays the blob trigger"
  bin/handler -port "$PORT" 2>"$RUN/handler.log" &
  pids+=($!)
  for i in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  "$RUN/devhost" poll -handler "http://127.0.0.1:$PORT" -interval 5s &
  pids+=($!)
fi

cat <<TXT

kvaudit is running: handler on http://127.0.0.1:$PORT, Azurite on 127.0.0.1:10000 (blob) and :10002 (table).

  Web page: http://127.0.0.1:$PORT/api/audit/ui
  Alerts:   webhook http://127.0.0.1:$ALERT_PORT/alerts (devhost receive prints each one below, signature
            checked; their JSON in $RUN/alerts.ndjson); curl -s http://127.0.0.1:$PORT/api/audit/alerts

Handler logs: $RUN/handler.log. Try:

  bin/handler parse internal/parse/testdata/sekoia-intake-formats-keyvault.jsonl | head -3
  curl -s 'http://127.0.0.1:$PORT/api/audit/events?vault=testpermissionvault&limit=5'
  curl -s "http://127.0.0.1:$PORT/api/audit/stats?vault=testpermissionvault&by=operation"
  .run/devhost append -vault demovault && sleep 6 && curl -s "http://127.0.0.1:$PORT/api/audit/events?vault=demovault"

Ctrl-C stops everything.
TXT
wait
