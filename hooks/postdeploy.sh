#!/bin/sh
# azd postdeploy hook: subscribes the function app's EventGridTrigger to
# BlobCreated events of the Key Vault audit container of every logs account
# (one per region holding vaults, issue 17), through the Event Grid system
# topic infra/main.bicep made or found on each.
#
# It runs after deploy because the webhook needs the eventgrid_extension
# system key, and Event Grid's validation handshake needs the endpoint
# answering: both exist only once the code is deployed and the host has
# started. Idempotent: an existing subscription is updated to the current
# key and endpoint (a deployment made before issue 17 had its subscription
# sent to the blob trigger's webhook; the same name is repointed here).
#
# Events Event Grid cannot deliver within its retries (exponential, up to
# 24 hours) go to the account's kvaudit-deadletter container when it has
# one (every account the template made); CatchUp reads the blobs anyway.
#
# Without azd, set the variables below (outputs of the deployment) and run it.
set -eu

: "${AZURE_RESOURCE_GROUP:?set by azd from infra/main.bicep outputs}"
: "${AZURE_FUNCTION_APP_NAME:?}"
: "${AZURE_FUNCTION_APP_HOSTNAME:?}"
# Every logs account's system topic: topic|topic's resource group|account
# id, separated by commas.
: "${EVENTGRID_TOPICS:?}"
# The subscription's name carries the environment's token: environments
# sharing one logs account (and so one system topic) keep one each.
: "${EVENTGRID_SUBSCRIPTION_NAME:?}"
CONTAINER="${AUDIT_LOGS_CONTAINER:-insights-logs-auditevent}"
SUBSCRIPTION_NAME="$EVENTGRID_SUBSCRIPTION_NAME"
DEAD_LETTER_CONTAINER=kvaudit-deadletter

# The host creates the key when the Event Grid extension starts: wait for
# it, a bounded number of times.
key=""
tries=0
while [ -z "$key" ] && [ "$tries" -lt 30 ]; do
  tries=$((tries + 1))
  key=$(az functionapp keys list --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
    --query "systemKeys.eventgrid_extension" --output tsv 2>/dev/null || true)
  if [ -z "$key" ]; then
    echo "postdeploy: waiting for the eventgrid_extension system key ($tries/30)"
    # Listing the functions wakes the app if it scaled to zero.
    az functionapp function list --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" --output none 2>/dev/null || true
    sleep 10
  fi
done
if [ -z "$key" ]; then
  echo "postdeploy: no eventgrid_extension key on $AZURE_FUNCTION_APP_NAME after $tries tries: is the app running? See Application Insights, then run hooks/postdeploy.sh again." >&2
  exit 1
fi

# The Event Grid extension finds the function by its name alone
# (learn.microsoft.com/azure/azure-functions/functions-bindings-event-grid-trigger:
# /runtime/webhooks/eventgrid?functionName={functionname}&code={systemkey}).
endpoint="https://${AZURE_FUNCTION_APP_HOSTNAME}/runtime/webhooks/eventgrid?functionName=EventGridTrigger&code=${key}"
subject="/blobServices/default/containers/${CONTAINER}/blobs/"

done_topics=0
for entry in $(printf '%s' "$EVENTGRID_TOPICS" | tr ',' ' '); do
  topic=${entry%%|*}
  rest=${entry#*|}
  topic_rg=${rest%%|*}
  account_id=${rest#*|}
  if [ -z "$topic" ] || [ -z "$topic_rg" ] || [ "$account_id" = "$rest" ]; then
    echo "postdeploy: EVENTGRID_TOPICS entry '$entry' is not topic|resource group|account id" >&2
    exit 1
  fi
  # Dead letters go to the account's own container, when it has one.
  dead_letter=""
  if az resource show --ids "$account_id/blobServices/default/containers/$DEAD_LETTER_CONTAINER" --output none 2>/dev/null; then
    dead_letter="$account_id/blobServices/default/containers/$DEAD_LETTER_CONTAINER"
  else
    echo "postdeploy: warning: ${account_id##*/} has no $DEAD_LETTER_CONTAINER container: events Event Grid cannot deliver are dropped after 24 hours (CatchUp still reads the blobs)" >&2
  fi
  if az eventgrid system-topic event-subscription show --resource-group "$topic_rg" \
    --system-topic-name "$topic" --name "$SUBSCRIPTION_NAME" --output none 2>/dev/null; then
    verb=update
    if [ -n "$dead_letter" ]; then
      az eventgrid system-topic event-subscription update --resource-group "$topic_rg" \
        --system-topic-name "$topic" --name "$SUBSCRIPTION_NAME" \
        --endpoint "$endpoint" \
        --included-event-types Microsoft.Storage.BlobCreated \
        --subject-begins-with "$subject" --deadletter-endpoint "$dead_letter" --output none
    else
      az eventgrid system-topic event-subscription update --resource-group "$topic_rg" \
        --system-topic-name "$topic" --name "$SUBSCRIPTION_NAME" \
        --endpoint "$endpoint" \
        --included-event-types Microsoft.Storage.BlobCreated \
        --subject-begins-with "$subject" --output none
    fi
  else
    verb=create
    if [ -n "$dead_letter" ]; then
      az eventgrid system-topic event-subscription create --resource-group "$topic_rg" \
        --system-topic-name "$topic" --name "$SUBSCRIPTION_NAME" \
        --endpoint-type webhook --endpoint "$endpoint" \
        --included-event-types Microsoft.Storage.BlobCreated \
        --subject-begins-with "$subject" --deadletter-endpoint "$dead_letter" --output none
    else
      az eventgrid system-topic event-subscription create --resource-group "$topic_rg" \
        --system-topic-name "$topic" --name "$SUBSCRIPTION_NAME" \
        --endpoint-type webhook --endpoint "$endpoint" \
        --included-event-types Microsoft.Storage.BlobCreated \
        --subject-begins-with "$subject" --output none
    fi
  fi
  done_topics=$((done_topics + 1))
  echo "postdeploy: event subscription $SUBSCRIPTION_NAME ${verb}d on $topic (${account_id##*/}): BlobCreated under $subject -> $AZURE_FUNCTION_APP_NAME EventGridTrigger"
done
if [ "$done_topics" -eq 0 ]; then
  echo "postdeploy: EVENTGRID_TOPICS names no topic" >&2
  exit 1
fi
